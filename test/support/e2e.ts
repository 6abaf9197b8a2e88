// Shared by the end-to-end suites: the live layers, what is left stored, and a run recorder.
import { assert } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type { ShardConfig } from "../../src/storage/targets.js"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as StorageLayers from "../../src/storage/Storage.js"

export { remaining } from "./jobs.js"

/** Storage over the given shards and Gearman over the given servers. */
export const env = (shards: ReadonlyArray<ShardConfig>, servers: ReadonlyArray<string>) =>
  Layer.mergeAll(StorageLayers.layer({ shards }), Gearman.layer({ servers }))

/** Records each execution per handle, so "exactly once" can be checked. */
export const recorder = Effect.sync(() => {
  // Mutated in place: copying a 20,000-entry map per job would dominate the test.
  const runs = new Map<string, number>()
  return {
    record: (job: { readonly dbid: number; readonly jobid: number }) =>
      Effect.sync(() => {
        const key = `${job.dbid}:${job.jobid}`
        runs.set(key, (runs.get(key) ?? 0) + 1)
      }),
    runs: Effect.sync(() => new Map(runs))
  }
})

/** Every one of `expected` jobs ran, and none twice. */
export const assertEachRanOnce = (counts: ReadonlyMap<string, number>, expected: number) => {
  assert.strictEqual(counts.size, expected, "every job ran")
  assert.isTrue([...counts.values()].every((n) => n === 1), "no job ran twice")
}
