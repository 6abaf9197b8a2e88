// What `npm pack` puts in the published tarball: the built library with its type declarations,
// the command, schema.sql and the docs a user reads; no tests, benches, chaos harness, scratch
// notes, databases or files that may hold secrets; nothing built from a source that is gone.
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"

const Pack = Schema.parseJson(Schema.Tuple(Schema.Struct({
  files: Schema.Array(Schema.Struct({ path: Schema.String })),
  unpackedSize: Schema.Number
})))

const packed = () => {
  const json = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    encoding: "utf8",
    env: { ...process.env, npm_config_update_notifier: "false" }
  })
  return Schema.decodeUnknownSync(Pack)(json)[0]
}

describe("npm pack", () => {
  it("holds the library, its declarations, the command and schema.sql, and nothing else", () => {
    const { files, unpackedSize } = packed()
    const paths = files.map((f) => f.path)
    for (const required of ["package.json", "README.md", "CHANGELOG.md", "schema.sql", "bin/garivini.js"]) {
      assert.include(paths, required)
    }
    assert.include(paths, "dist/index.js")
    assert.include(paths, "dist/index.d.ts")
    // The command's bundle (scripts/bundle-cli.mjs), which bin/garivini.js runs.
    assert.include(paths, "dist/cli/bundle.mjs")
    // The web console's stylesheet and script are modules: they ship with the build, and the
    // console fetches nothing from the internet at run time.
    for (const module of ["dist/web/assets.js", "dist/web/WebConsole.js", "dist/cli/web.js"]) {
      assert.include(paths, module)
    }
    const allowed =
      /^(package\.json|README\.md|CHANGELOG\.md|schema\.sql|bin\/garivini\.js|dist\/cli\/bundle\.mjs|dist\/.+\.(js|d\.ts|js\.map))$/
    assert.deepStrictEqual(paths.filter((p) => !allowed.test(p)), [])
    // Tests, benches, the chaos harness, notes, databases, keys and env files never ship.
    const forbidden =
      /(^|\/)(test|tests|bench|chaos|\.scratch|\.ci|\.github|node_modules)\/|\.test\.|(^|\/)\.env|\.(pem|key|p12|db|db-wal|sqlite|log)$|(^|\/)\.npmrc$/
    assert.deepStrictEqual(paths.filter((p) => forbidden.test(p)), [])
    // Every module has its declarations, and comes from a source that still exists (dist/ is
    // never cleaned by tsc: a removed module's old build would otherwise ship).
    for (const js of paths.filter((p) => p.startsWith("dist/") && p.endsWith(".js"))) {
      assert.include(paths, js.replace(/\.js$/, ".d.ts"), js)
      assert.isTrue(existsSync(js.replace(/^dist\//, "src/").replace(/\.js$/, ".ts")), `${js}: no source`)
    }
    // A guard against a folder slipping in: the tarball is about 6 MB unpacked today (the
    // bundled command is 4 MB of it).
    assert.isBelow(unpackedSize, 8_000_000)
  })
})
