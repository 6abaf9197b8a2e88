// Bundles the compiled CLI (dist/cli/main.js) into one file, dist/cli/bundle.mjs, which
// bin/garivini.js runs. Every role process loads only the code it can reach (tree-shaken
// Effect, @effect/cli, the platform) instead of every module of each package's index: a smaller
// resident set and a faster start (docs/performance.md, "One bundle for the command").
// The bundle sits in dist/cli/ like the module it replaces, so the paths the code resolves from
// import.meta.url (schema.sql, the Driver's child entry) resolve the same from both.
// The library entry (dist/index.js) and the Driver's child (dist/driver/childMain.js) stay
// unbundled: they load a host's or a user's modules, which import the packages themselves.
import * as esbuild from "esbuild"
import { fileURLToPath, URL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

await esbuild.build({
  absWorkingDir: root,
  entryPoints: ["dist/cli/main.js"],
  outfile: "dist/cli/bundle.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Native or optional drivers, loaded from node_modules as they are (SQLite only when a
  // sqlite: target is used; it may be absent).
  external: ["mysql2", "better-sqlite3", "@effect/sql-sqlite-node", "@effect/sql-sqlite-node/*"],
  // Bundled CommonJS code calls require() for node's own modules.
  banner: {
    js:
      "import { createRequire as __garivini_require } from 'node:module';\nconst require = __garivini_require(import.meta.url);"
  },
  legalComments: "none",
  logLevel: "warning"
})
