/**
 * A gearmand (Debian's `gearman-job-server`) started on a free loopback port for the life of a
 * scope: for `garivini demo` and the tests. It is SIGKILLed when the scope closes, and its pid
 * file removed.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { Data, Effect, Schedule } from "effect"
import type { Scope } from "effect"

/** gearmand could not be started, or did not come up; `cause` is the spawn or connect error. */
export class GearmandUnavailable extends Data.TaggedError("GearmandUnavailable")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** A port on 127.0.0.1 that was free a moment ago. */
export const freePort = Effect.async<number>((resume) => {
  const probe = Net.createServer()
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(Effect.succeed(port)))
  })
})

const canConnect = (port: number) =>
  Effect.async<void, Error>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port }, () => {
      socket.destroy()
      resume(Effect.void)
    })
    socket.once("error", (e) => {
      socket.destroy()
      resume(Effect.fail(e))
    })
  })

/** Waits for a child process to have exited. */
export const exited = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

/**
 * Starts gearmand on `port` and waits until it accepts connections. Its pid file goes into a
 * directory of its own (gearmand's default, under /var/run, is not writable for most users, and a
 * fixed name in /tmp could be planted), removed when the process exits: SIGKILL leaves gearmand
 * no chance to remove it itself.
 */
export const startGearmand = (port: number): Effect.Effect<ChildProcess, GearmandUnavailable> =>
  Effect.gen(function*() {
    const dir = mkdtempSync(Path.join(tmpdir(), "garivini-gearmand-"))
    const child = spawn(
      "gearmand",
      [
        "--listen=127.0.0.1",
        `--port=${port}`,
        "--log-file=none",
        "--threads=1",
        `--pid-file=${Path.join(dir, "gearmand.pid")}`
      ],
      { stdio: ["ignore", "ignore", "pipe"] }
    )
    const removeDir = () => rmSync(dir, { recursive: true, force: true })
    child.once("exit", removeDir)
    let stderr = ""
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()))
    const spawnError = yield* Effect.async<Error | undefined>((resume) => {
      child.once("error", (e) => resume(Effect.succeed(e)))
      child.once("spawn", () => resume(Effect.succeed(undefined)))
    })
    if (spawnError !== undefined) {
      removeDir()
      return yield* Effect.fail(
        new GearmandUnavailable({
          message:
            `cannot start gearmand (${spawnError.message}); install it with: apt-get install -y gearman-job-server`,
          cause: spawnError
        })
      )
    }
    yield* canConnect(port).pipe(
      Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(500)))),
      Effect.mapError((e) =>
        new GearmandUnavailable({
          message: `gearmand on port ${port} did not come up: ${e.message}; ${stderr.trim()}`,
          cause: e
        })
      ),
      Effect.tapError(() => Effect.sync(() => child.kill("SIGKILL")))
    )
    return child
  })

/** A gearmand on a free port, killed when the scope closes. Returns its `host:port`. */
export const scopedGearmand: Effect.Effect<string, GearmandUnavailable, Scope.Scope> = Effect.gen(function*() {
  const port = yield* freePort
  yield* Effect.acquireRelease(
    startGearmand(port),
    (child) => Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), exited(child))
  )
  return `127.0.0.1:${port}`
})
