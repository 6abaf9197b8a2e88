// Spawns real gearmand processes on loopback ports held for the test (support/ports.ts) and kills
// them after.
// A missing gearmand fails the test with how to install it (never a skip).
import type { ChildProcess } from "node:child_process"
import type { Scope } from "effect"
import { Context, Effect, Layer, Schedule } from "effect"
import { Gearman, layer, type GearmanOptions } from "../../src/gearman/Gearman.js"
import { exited, startGearmand } from "../../src/testing/gearmandProcess.js"
import { freePort } from "../support/ports.js"

export interface GearmandProcess {
  readonly server: string
  readonly port: number
  /** SIGKILL, as a crash would. */
  readonly kill: Effect.Effect<void>
  /** Starts a fresh gearmand on the same port (after a kill). */
  readonly restart: Effect.Effect<void>
}

const start = (port: number) => startGearmand(port).pipe(Effect.orDieWith((e) => new Error(e.message)))

/** A gearmand on a port of this worker's own for the lifetime of the scope. */
export const gearmand: Effect.Effect<GearmandProcess, never, Scope.Scope> = Effect.gen(function*() {
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
    restart: Effect.gen(function*() {
      yield* kill
      child = yield* start(port)
    })
  }
})

/** A gearmand for the lifetime of the scope: its `host:port`. */
export const gearmandServer: Effect.Effect<string, never, Scope.Scope> = Effect.map(gearmand, (g) => g.server)

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
