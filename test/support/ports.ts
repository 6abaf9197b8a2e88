// Ports on 127.0.0.1 for servers a test starts in another process (gearmand, `garivini up`, the
// Driver's console) and for addresses where nothing listens. A port taken with `listen(0)` and
// closed again may be taken by another test worker before the child binds it; these are not:
// - each vitest worker hands out ports from a range of its own (from VITEST_POOL_ID), below the
//   kernel's ephemeral range (32768–60999, where `listen(0)` and outgoing connections take theirs),
//   so no two workers of a run, and no in-process server on port 0, can get the same port;
// - a port is checked free by binding it, and stays reserved in this worker until the scope that
//   took it closes (a gearmand restarted on its port keeps it);
// - `heldPort` keeps it bound until `release`, called just before the child process binds it.
// In-process servers keep using port 0: they hold their port from the start.
import * as Net from "node:net"
import type { Scope } from "effect"
import { Effect } from "effect"

const FIRST = 20_000
const RANGE = 400
/** Ranges of 400 from 20000 up to 32000: 30 workers, more than maxWorkers will ever be. */
const SLOTS = 30

const pool = Number(process.env["VITEST_POOL_ID"] ?? "1")
const base = FIRST + ((Number.isInteger(pool) && pool > 0 ? pool - 1 : 0) % SLOTS) * RANGE
/** Ports this worker has handed out and not yet taken back. */
const reserved = new Set<number>()
// Where in the range to look next: a random start, so two runs at once (two checkouts) rarely probe
// the same ports; binding settles it when they do.
let next = Math.floor(Math.random() * RANGE)

/** A server bound to the port, or undefined when something else holds it. */
const bind = (port: number) =>
  Effect.async<Net.Server | undefined>((resume) => {
    const server = Net.createServer()
    server.once("error", () => resume(Effect.succeed(undefined)))
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => resume(Effect.succeed(server)))
  })

const close = (server: Net.Server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))

export interface HeldPort {
  readonly port: number
  /** Stops holding the port (it stays reserved in this worker until the scope closes). */
  readonly release: Effect.Effect<void>
}

/** The range this worker takes its ports from (for messages and tests of this helper). */
export const portRange = { first: base, last: base + RANGE - 1 } as const

/** Whether this worker has handed the port out and its scope is still open. */
export const isReserved = (port: number): boolean => reserved.has(port)

/** A port of this worker's range, bound by this process until `release` or the scope's end. */
export const heldPort: Effect.Effect<HeldPort, never, Scope.Scope> = Effect.acquireRelease(
  Effect.gen(function*() {
    for (let i = 0; i < RANGE; i++) {
      const port = base + (next++ % RANGE)
      if (reserved.has(port)) continue
      const server = yield* bind(port)
      if (server === undefined) continue
      reserved.add(port)
      let bound = true
      const release = Effect.suspend(() => {
        if (!bound) return Effect.void
        bound = false
        return close(server)
      })
      return { port, release }
    }
    return yield* Effect.dieMessage(`no free port in ${portRange.first}-${portRange.last}`)
  }),
  (held) => Effect.zipRight(held.release, Effect.sync(() => void reserved.delete(held.port)))
)

/** A port free for a child process to listen on: released already, reserved until the scope closes. */
export const freePort: Effect.Effect<number, never, Scope.Scope> = Effect.flatMap(
  heldPort,
  (held) => Effect.as(held.release, held.port)
)

/** A port where nothing listens (connections are refused), reserved until the scope closes. */
export const closedPort: Effect.Effect<number, never, Scope.Scope> = freePort
