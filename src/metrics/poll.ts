/**
 * The gauges read on an interval while metrics are on: the stored jobs (`Storage.counts()`) and
 * the job servers' admin `status`. A failed read is logged and leaves the gauges as they were
 * (the job server's `up` gauge says 0).
 */
import { Duration, Effect, Layer, MetricLabel, Schedule } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import { serverQueued, serverRunning, serverUp, serverWorkers } from "../gearman/metrics.js"
import { nowSeconds } from "../Job.js"
import { recordCounts } from "../storage/metrics.js"
import { Storage } from "../storage/Storage.js"

/** How often the gauges are read by default. */
export const DEFAULT_INTERVAL = Duration.seconds(15)

const every = <E extends { readonly message: string }, R>(
  interval: Duration.DurationInput,
  read: Effect.Effect<void, E, R>
) =>
  read.pipe(
    Effect.catchAll((e) => Effect.logWarning(`metrics: ${e.message}`)),
    Effect.repeat(Schedule.spaced(interval)),
    Effect.annotateLogs({ role: "Metrics" }),
    Effect.forkScoped,
    Effect.asVoid
  )

/** Per shard and function: jobs by state and the oldest due job's age. */
export const pollStorage = (interval: Duration.DurationInput = DEFAULT_INTERVAL) =>
  Effect.gen(function*() {
    const storage = yield* Storage
    let seen: ReturnType<typeof recordCounts> = new Map()
    yield* every(
      interval,
      Effect.flatMap(Effect.zip(storage.counts(), nowSeconds), ([counts, now]) =>
        Effect.sync(() => {
          seen = recordCounts(counts, now, seen)
        }))
    )
  })

/** Per job server and function: queued, running, workers; and whether each server answers. */
export const pollJobServers = (interval: Duration.DurationInput = DEFAULT_INTERVAL) =>
  Effect.gen(function*() {
    const gearman = yield* Gearman
    const readServer = (server: string) => {
      const serverTag = MetricLabel.make("server", server)
      return gearman.admin.status(server).pipe(
        Effect.map((functions) => {
          serverUp.unsafeUpdate(1, [serverTag])
          for (const f of functions) {
            const tags = [serverTag, MetricLabel.make("funcname", f.name)]
            serverQueued.unsafeUpdate(f.total, tags)
            serverRunning.unsafeUpdate(f.running, tags)
            serverWorkers.unsafeUpdate(f.workers, tags)
          }
        }),
        Effect.catchAll(() => Effect.sync(() => serverUp.unsafeUpdate(0, [serverTag])))
      )
    }
    yield* every(interval, Effect.forEach(gearman.servers, readServer, { discard: true }))
  })

/** Both pollers as layers, for the commands that have storage and job servers. */
export const layerStorage = (interval?: Duration.DurationInput) => Layer.scopedDiscard(pollStorage(interval))
export const layerJobServers = (interval?: Duration.DurationInput) => Layer.scopedDiscard(pollJobServers(interval))
