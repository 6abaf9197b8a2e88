// Counting what is stored, summed over every shard.
import { Effect } from "effect"
import { countedJobs, Storage } from "../../src/storage/Storage.js"

/** Jobs still stored, over every shard and state. */
export const remaining = Effect.flatMap(
  Storage,
  (s) => Effect.map(s.counts(), (c) => c.reduce((n, x) => n + countedJobs(x), 0))
)

/** Jobs due now, over every shard. */
export const due = Effect.flatMap(Storage, (s) => Effect.map(s.counts(), (c) => c.reduce((n, x) => n + x.due, 0)))
