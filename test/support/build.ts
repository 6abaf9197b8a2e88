// The CLI and Driver tests and the as-deployed bench run dist/: build it when any source is
// newer, so a run after an edit never exercises stale code.
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"

const newestMtime = (dir: string, suffix: string): number => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith(suffix)) continue
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs)
  }
  return newest
}

/** Builds `root`/dist when any `root`/src file is newer, or the CLI's bundle is; says so on stdout. */
export const buildIfStale = (root: string, say: (line: string) => void = console.log): void => {
  const dist = join(root, "dist")
  const bundle = join(dist, "cli", "bundle.mjs")
  const sources = newestMtime(join(root, "src"), ".ts")
  if (existsSync(bundle) && newestMtime(dist, ".js") >= sources && statSync(bundle).mtimeMs >= sources) return
  say("dist/ is older than src/: building (npm run build)")
  execFileSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" })
}
