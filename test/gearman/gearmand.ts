// Spawns real gearmand processes on free loopback ports for the tests and kills them after.
// A missing gearmand fails the test with how to install it (never a skip).
import { spawn, type ChildProcess } from "node:child_process"
import * as Net from "node:net"
import { Context, Effect, Layer, Schedule, Scope } from "effect"
import { Gearman, layer, type GearmanOptions } from "../../src/gearman/Gearman.js"

export interface GearmandProcess {
  readonly server: string
  readonly port: number
  /** SIGKILL, as a crash would. */
  readonly kill: Effect.Effect<void>
  /** Starts a fresh gearmand on the same port (after a kill). */
  readonly restart: Effect.Effect<void>
}

const freePort = Effect.async<number>((resume) => {
  const probe = Net.createServer()
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(Effect.succeed(port)))
  })
})

const canConnect = (port: number) =>
  Effect.async<void, string>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port }, () => {
      socket.destroy()
      resume(Effect.void)
    })
    socket.once("error", (e) => {
      socket.destroy()
      resume(Effect.fail(e.message))
    })
  })

const exited = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

const start = (port: number) =>
  Effect.gen(function* () {
    const child = spawn(
      "gearmand",
      ["--listen=127.0.0.1", `--port=${port}`, "--log-file=none", "--threads=1", `--pid-file=/tmp/garivini-test-gearmand-${port}.pid`],
      { stdio: ["ignore", "ignore", "pipe"] }
    )
    let stderr = ""
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()))
    const spawnError = yield* Effect.async<string | undefined>((resume) => {
      child.once("error", (e) => resume(Effect.succeed(e.message)))
      child.once("spawn", () => resume(Effect.succeed(undefined)))
    })
    if (spawnError !== undefined) {
      return yield* Effect.dieMessage(
        `cannot start gearmand (${spawnError}). Install it with: apt-get install -y gearman-job-server gearman-tools`
      )
    }
    yield* canConnect(port).pipe(
      Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(500)))),
      Effect.orDieWith((e) => new Error(`gearmand on port ${port} did not come up: ${e}; stderr: ${stderr}`))
    )
    return child
  })

/** A gearmand on a free port for the lifetime of the scope. */
export const gearmand: Effect.Effect<GearmandProcess, never, Scope.Scope> = Effect.gen(function* () {
  const port = yield* freePort
  let child: ChildProcess | undefined = yield* start(port)
  const kill = Effect.suspend(() => {
    const c = child
    child = undefined
    if (!c) return Effect.void
    c.kill("SIGKILL")
    return exited(c)
  })
  yield* Effect.addFinalizer(() => kill)
  return {
    server: `127.0.0.1:${port}`,
    port,
    kill,
    restart: Effect.gen(function* () {
      yield* kill
      child = yield* start(port)
    })
  }
})

/** Polls until `check` yields true; the timeout is a hang guard, not a timed assertion. */
export const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, what: string, timeout: number = 30_000) =>
  check.pipe(
    Effect.flatMap((ok) => (ok ? Effect.void : Effect.fail("not yet" as const))),
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`timed out waiting for ${what}`) }),
    Effect.orDie
  )

/** The live service for these servers, held open for the rest of the caller's scope. */
export const live = (servers: ReadonlyArray<string>, options: Omit<GearmanOptions, "servers"> = {}) =>
  Effect.map(Layer.build(layer({ ...options, servers })), Context.get(Gearman))
