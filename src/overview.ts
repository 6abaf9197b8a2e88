/**
 * What an operator's overview reads, shared by `garivini status` and the web console: job counts
 * per shard and function (one shard down does not hide the others) and the job servers' figures,
 * summed per function and per server (one server down does not hide the others).
 */
import { Effect, Either } from "effect"
import { Gearman } from "./gearman/Gearman.js"
import type { FunctionStatus } from "./protocol/admin.js"
import { errorText } from "./roles/QueueRunner.js"
import { Storage } from "./storage/Storage.js"
import type { FunctionCounts } from "./storage/Storage.js"

export interface StoredCounts {
  readonly counts: ReadonlyArray<FunctionCounts>
  readonly unavailable: ReadonlyArray<{ readonly shard: number; readonly error: string }>
}

/** Counts of every shard, each read on its own. */
export const storedCounts: Effect.Effect<StoredCounts, never, Storage> = Effect.gen(function*() {
  const storage = yield* Storage
  const perShard = yield* Effect.forEach(storage.shardIds, (dbid) => Effect.either(storage.counts(dbid)), {
    concurrency: "unbounded"
  })
  return {
    counts: perShard.flatMap((r) => Either.isRight(r) ? r.right : []),
    unavailable: perShard.flatMap((r, i) =>
      Either.isLeft(r) ? [{ shard: storage.shardIds[i]!, error: r.left.message }] : []
    )
  }
})

export interface QueueFigures {
  /** Per function, summed over the servers that answered. */
  readonly byFunction: ReadonlyMap<string, FunctionStatus>
  /** Why no server answered, if none did. */
  readonly error: string | null
}

/** gearmand's `status`, summed per function. */
export const queueFigures: Effect.Effect<QueueFigures, never, Gearman> = Effect.flatMap(
  Gearman,
  (gearman) =>
    Effect.map(Effect.either(gearman.queueDepths()), (depths) =>
      Either.isRight(depths)
        ? { byFunction: depths.right, error: null }
        : { byFunction: new Map(), error: errorText(depths.left) })
)

export interface ServerFigures {
  readonly server: string
  readonly up: boolean
  /** Jobs waiting for a worker (total less running), over every function. */
  readonly queued: number
  readonly running: number
  /** CAN_DO registrations, summed over functions. */
  readonly workers: number
  readonly functions: number
  readonly error: string | null
}

export interface JobServers {
  readonly servers: ReadonlyArray<ServerFigures>
  /** Per function, summed over the servers that answered. */
  readonly byFunction: ReadonlyMap<string, FunctionStatus>
}

/**
 * Each job server's `status`, asked at once (one round trip per server, nothing logged: a page
 * polling every few seconds would repeat a down server's warning); a server that does not answer
 * is down.
 */
export const jobServers: Effect.Effect<JobServers, never, Gearman> = Effect.flatMap(
  Gearman,
  (gearman) =>
    Effect.map(
      Effect.forEach(gearman.servers, (server) => Effect.either(gearman.admin.status(server)), {
        concurrency: "unbounded"
      }),
      (results) => {
        const byFunction = new Map<string, FunctionStatus>()
        const servers = results.map((status, i): ServerFigures => {
          const server = gearman.servers[i]!
          if (Either.isLeft(status)) {
            return { server, up: false, queued: 0, running: 0, workers: 0, functions: 0, error: errorText(status.left) }
          }
          for (const f of status.right) {
            const sum = byFunction.get(f.name)
            byFunction.set(
              f.name,
              sum === undefined ? f : {
                name: f.name,
                total: sum.total + f.total,
                running: sum.running + f.running,
                workers: sum.workers + f.workers
              }
            )
          }
          return {
            server,
            up: true,
            queued: status.right.reduce((n, f) => n + Math.max(0, f.total - f.running), 0),
            running: status.right.reduce((n, f) => n + f.running, 0),
            workers: status.right.reduce((n, f) => n + f.workers, 0),
            functions: status.right.length,
            error: null
          }
        })
        return { servers, byFunction }
      }
    )
)
