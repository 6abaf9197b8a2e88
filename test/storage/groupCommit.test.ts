// The one group-commit batcher behind coalesced inserts and the worker helper's completions.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as GroupCommit from "../../src/storage/GroupCommit.js"
import { eventually } from "../gearman/gearmand.js"

/** A batcher whose batches are recorded; each batch waits for `gate` when one is set. */
const recording = (options: { readonly maxBatch: number; readonly maxWaiting?: number }) =>
  Effect.gen(function*() {
    const batches: Array<ReadonlyArray<number>> = []
    let inFlight = 0
    let mostInFlight = 0
    let gate: Deferred.Deferred<void> | undefined
    const batcher = yield* GroupCommit.make<number>({
      ...options,
      run: (batch) =>
        Effect.gen(function*() {
          inFlight++
          mostInFlight = Math.max(mostInFlight, inFlight)
          if (gate !== undefined) yield* Deferred.await(gate)
          yield* Effect.yieldNow()
          batches.push(batch)
          inFlight--
        })
    })
    return {
      batcher,
      batches,
      mostInFlight: () => mostInFlight,
      hold: (d: Deferred.Deferred<void> | undefined) => void (gate = d)
    }
  })

describe("GroupCommit", () => {
  it.scopedLive("what arrives in one turn goes in one batch; one batch in flight; at most maxBatch each", () =>
    Effect.gen(function*() {
      const r = yield* recording({ maxBatch: 40 })
      yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), r.batcher.offer, { discard: true })
      yield* eventually(Effect.sync(() => r.batches.flat().length === 100), "every item to run")
      assert.deepStrictEqual(r.batches.map((b) => b.length), [40, 40, 20])
      assert.deepStrictEqual(r.batches.flat(), Array.from({ length: 100 }, (_, i) => i))
      assert.strictEqual(r.mostInFlight(), 1)
    }))

  it.scopedLive("while a batch is in flight the next items gather; a full queue holds offers back", () =>
    Effect.gen(function*() {
      const r = yield* recording({ maxBatch: 100, maxWaiting: 3 })
      const gate = yield* Deferred.make<void>()
      r.hold(gate)
      yield* r.batcher.offer(0)
      yield* Effect.sleep("5 millis")
      // Batch [0] is in flight: 1, 2, 3 wait; 4 is held back.
      for (const i of [1, 2, 3]) yield* r.batcher.offer(i)
      const fourth = yield* Effect.fork(r.batcher.offer(4))
      yield* Effect.sleep("5 millis")
      assert.isNull(fourth.unsafePoll())
      r.hold(undefined)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(fourth)
      yield* eventually(Effect.sync(() => r.batches.flat().length === 5), "every item to run")
      assert.deepStrictEqual(r.batches, [[0], [1, 2, 3], [4]])
    }))

  it.scopedLive("a withdrawn item never runs; a dying batch is logged and the next goes on", () =>
    Effect.gen(function*() {
      const ran: Array<number> = []
      const batcher = yield* GroupCommit.make<number>({
        maxBatch: 10,
        run: (batch) => batch.includes(13) ? Effect.die("bug") : Effect.sync(() => void ran.push(...batch))
      })
      batcher.unsafeOffer(13)
      batcher.unsafeOffer(1)
      assert.isTrue(batcher.withdraw(1))
      assert.isFalse(batcher.withdraw(1))
      yield* Effect.sleep("5 millis")
      yield* batcher.offer(2)
      yield* eventually(Effect.sync(() => ran.length > 0), "the next batch to run")
      assert.deepStrictEqual(ran, [2])
    }))

  it.live("closing the scope runs what still waits, after the batch in flight", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const ran: Array<ReadonlyArray<number>> = []
      const batcher = yield* GroupCommit.make<number>({
        maxBatch: 10,
        window: "1 hour",
        run: (batch) => Effect.sync(() => void ran.push(batch))
      }).pipe(Scope.extend(scope))
      for (const i of [1, 2, 3]) yield* batcher.offer(i)
      assert.deepStrictEqual(ran, [])
      // The window would hold them an hour: closing does not wait for it.
      yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* eventually(Effect.sync(() => ran.length > 0), "the waiting items to run")
      assert.deepStrictEqual(ran, [[1, 2, 3]])
    }))
})
