/**
 * A pid file held for the life of a scope. It is created exclusively, so a second process
 * started with the same file fails without touching the first one's; a file left by a process
 * that is gone (SIGKILL, a crash) is replaced. On release it is removed only while it still
 * names this process.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { Data, Effect } from "effect"
import { ConfigInvalid } from "../errors.js"

export class PidFileInUse extends Data.TaggedError("PidFileInUse")<{ readonly path: string; readonly pid: number }> {
  override get message(): string {
    return `pid file ${this.path} names process ${this.pid}, which is running: is another instance running?`
  }
}

/** The pid a file names, if it names one. */
const owner = (path: string): number | undefined => {
  try {
    const text = readFileSync(path, "utf8").trim()
    return /^\d+$/.test(text) ? Number(text) : undefined
  } catch {
    return undefined
  }
}

const running = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const cannotWrite = (path: string, e: unknown) =>
  new ConfigInvalid({
    field: "pid-file",
    reason: `cannot write ${path}: ${e instanceof Error ? e.message : String(e)}`,
    cause: e
  })

const create = (path: string) =>
  Effect.try({
    try: () => writeFileSync(path, `${process.pid}\n`, { flag: "wx" }),
    catch: (e) => e as NodeJS.ErrnoException
  })

const claim = (path: string): Effect.Effect<void, ConfigInvalid | PidFileInUse> =>
  create(path).pipe(
    Effect.catchAll((e) => {
      if (e.code !== "EEXIST") return Effect.fail(cannotWrite(path, e))
      const pid = owner(path)
      if (pid !== undefined && pid !== process.pid && running(pid)) return Effect.fail(new PidFileInUse({ path, pid }))
      // Stale (its process is gone) or unreadable: replace it, once; a racing Driver that got in
      // first makes the second create fail.
      return Effect.logWarning(
        `replacing stale pid file ${path}${pid === undefined ? "" : ` (process ${pid} is gone)`}`
      ).pipe(
        Effect.zipRight(Effect.sync(() => rmSync(path, { force: true }))),
        Effect.zipRight(create(path)),
        Effect.mapError((
          again
        ) => (again.code === "EEXIST" ? new PidFileInUse({ path, pid: owner(path) ?? 0 }) : cannotWrite(path, again)))
      )
    })
  )

/** Holds `path` for the scope. */
export const hold = (path: string) =>
  Effect.acquireRelease(claim(path), () =>
    Effect.sync(() => {
      if (owner(path) === process.pid) rmSync(path, { force: true })
    }))
