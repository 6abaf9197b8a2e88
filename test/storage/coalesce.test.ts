// Concurrent inserts merged into batches: fewer statements, the same outcome for every call.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Either, Exit, Fiber, Option } from "effect"
import * as MemoryShard from "../../src/storage/MemoryShard.js"
import type { ShardBackend } from "../../src/storage/ShardBackend.js"
import { make } from "../../src/storage/Storage.js"
import { keyFor } from "./contract.js"

/** A shard that counts the insert statements it is sent. */
const counting = (backend: ShardBackend) => {
  let statements = 0
  return {
    backend: {
      ...backend,
      insert: (rows: Parameters<ShardBackend["insert"]>[0]) =>
        Effect.suspend(() => (statements++, backend.insert(rows)))
    },
    statements: () => statements
  }
}

describe("coalesced inserts", () => {
  it.scoped("200 concurrent calls: each gets its own outcome or error, in far fewer statements", () =>
    Effect.gen(function*() {
      const one = counting(yield* MemoryShard.make(1))
      const two = counting(yield* MemoryShard.make(2, { down: true }))
      const storage = yield* make([one.backend, two.backend], { coalesceInserts: true })
      const calls = Array.from({ length: 200 }, (_, i) =>
        i < 140
          ? [{ funcname: "plain", arg: `${i}`, runAfter: 0 }]
          : i < 180
          // 20 keys, each inserted by two different calls: one stores it, the other is its duplicate.
          ? [{ funcname: "uniq", uniqkey: keyFor(0, 2, `u${(i - 140) % 20}-`), runAfter: 0 }]
          : i < 190
          // Pinned to the shard that is down.
          ? [{ funcname: "pinned", uniqkey: keyFor(1, 2, `d${i}-`), runAfter: 0 }]
          // A call with two jobs, one on each shard: part of it fails.
          : [{ funcname: "mixed", uniqkey: keyFor(0, 2, `m${i}-`), runAfter: 0 }, {
            funcname: "mixed",
            uniqkey: keyFor(1, 2, `n${i}-`),
            runAfter: 0
          }])
      const results = yield* Effect.forEach(calls, (jobs) => Effect.either(storage.insert(jobs)), {
        concurrency: "unbounded"
      })
      const ok = (i: number) => Either.getOrThrow(results[i]!)
      for (let i = 0; i < 140; i++)
        assert.deepStrictEqual([ok(i).length, ok(i)[0]!.handle.dbid, ok(i)[0]!.duplicate], [1, 1, false])
      for (let k = 0; k < 20; k++) {
        const [a, b] = [ok(140 + k)[0]!, ok(160 + k)[0]!]
        assert.deepStrictEqual(a.handle, b.handle, "both calls name the one stored job")
        assert.deepStrictEqual([a.duplicate, b.duplicate].sort(), [false, true])
      }
      for (let i = 180; i < 190; i++) {
        const r = results[i]!
        assert.isTrue(Either.isLeft(r) && r.left._tag === "ShardUnavailable", `call ${i}`)
      }
      for (let i = 190; i < 200; i++) {
        const r = results[i]!
        assert.isTrue(Either.isLeft(r) && r.left._tag === "PartialInsert", `call ${i}`)
        if (Either.isLeft(r) && r.left._tag === "PartialInsert") {
          assert.strictEqual(r.left.outcomes.length, 2)
          assert.strictEqual(r.left.outcomes[0]!.handle.dbid, 1)
          assert.deepStrictEqual(r.left.failures.map((f) => f.indices), [[1]])
        }
      }
      assert.isTrue(one.statements() < 50, `${one.statements()} statements for 200 calls`)
    }))

  it.scoped("a call whose arg cannot fit its shard fails alone; the rest of its batch is stored", () =>
    Effect.gen(function*() {
      const shard = yield* MemoryShard.make(1)
      const small = { ...shard, maxArgBytes: Effect.succeed(10) }
      const storage = yield* make([small], { coalesceInserts: true })
      const results = yield* Effect.forEach(
        ["ok", "x".repeat(11), "fine", "good"],
        (arg) => Effect.either(storage.insert([{ funcname: "f", arg, runAfter: 0 }])),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(results.map((r) => Either.isRight(r) ? "stored" : r.left._tag), [
        "stored",
        "InvalidJob",
        "stored",
        "stored"
      ])
    }))

  it.scoped("a defect in one batch reaches its callers, and later inserts still work", () =>
    Effect.gen(function*() {
      const shard = yield* MemoryShard.make(1)
      let broken = true
      const flaky = {
        ...shard,
        insert: (rows: Parameters<ShardBackend["insert"]>[0]) =>
          Effect.suspend(() => broken ? ((broken = false), Effect.die(new Error("bug"))) : shard.insert(rows))
      }
      const storage = yield* make([flaky], { coalesceInserts: true })
      const first = yield* Effect.exit(storage.insert([{ funcname: "f", runAfter: 0 }]))
      assert.isTrue(Exit.isFailure(first) && Cause.isDie(first.cause))
      const second = yield* storage.insert([{ funcname: "f", runAfter: 0 }])
      assert.strictEqual(second.length, 1)
    }))

  it.scoped("a caller interrupted while its call waits for a batch is withdrawn: its job is not stored", () =>
    Effect.gen(function*() {
      const shard = yield* MemoryShard.make(1)
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      let first = true
      const held = {
        ...shard,
        insert: (rows: Parameters<ShardBackend["insert"]>[0]) =>
          Effect.suspend(() => {
            if (!first) return shard.insert(rows)
            first = false
            return Effect.zipRight(
              Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(release)),
              shard.insert(rows)
            )
          })
      }
      // Each call that joins the waiting ones (the first is taken by the batching fiber at once).
      const queued = yield* Deferred.make<void>()
      const storage = yield* make([held], {
        coalesceInserts: true,
        onInsertQueued: (n) => void (n === 1 && first === false ? Deferred.unsafeDone(queued, Exit.void) : undefined)
      })
      const inFlight = yield* Effect.fork(storage.insert([{ funcname: "f", arg: "in flight", runAfter: 0 }]))
      yield* Deferred.await(entered)
      const waiting = yield* Effect.fork(storage.insert([{ funcname: "f", arg: "withdrawn", runAfter: 0 }]))
      // Interrupted only once it waits in the queue, so the withdrawal is what keeps it out.
      yield* Deferred.await(queued)
      yield* Fiber.interrupt(waiting)
      yield* Deferred.succeed(release, undefined)
      const stored = yield* Fiber.join(inFlight)
      assert.strictEqual(stored.length, 1)
      const after = yield* storage.insert([{ funcname: "f", arg: "later", runAfter: 0 }])
      const jobs = yield* storage.list()
      assert.deepStrictEqual(jobs.map((j) => Buffer.from(j.arg).toString()), ["in flight", "later"])
      assert.strictEqual(after[0]!.handle.jobid, jobs[1]!.jobid)
    }))

  it.scoped("a shard whose statement never answers holds up only its own callers, not the other shard's batches", () =>
    Effect.gen(function*() {
      const one = counting(yield* MemoryShard.make(1))
      const shard = yield* MemoryShard.make(2)
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const stalled = {
        ...shard,
        insert: (rows: Parameters<ShardBackend["insert"]>[0]) =>
          Effect.zipRight(
            Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(release)),
            shard.insert(rows)
          )
      }
      const storage = yield* make([one.backend, stalled], { coalesceInserts: true })
      const held = yield* Effect.fork(storage.insert([{ funcname: "f", uniqkey: keyFor(1, 2, "held-"), runAfter: 0 }]))
      yield* Deferred.await(entered)
      // Several rounds of batches on shard 1, and a call with a job on each shard, meanwhile.
      const mixed = yield* Effect.fork(storage.insert([
        { funcname: "f", uniqkey: keyFor(0, 2, "mixed-a-"), runAfter: 0 },
        { funcname: "f", uniqkey: keyFor(1, 2, "mixed-b-"), runAfter: 0 }
      ]))
      for (let round = 0; round < 3; round++) {
        const done = yield* Effect.forEach(
          Array.from(
            { length: 10 },
            (_, i) => [{ funcname: "f", uniqkey: keyFor(0, 2, `r${round}-${i}-`), runAfter: 0 }]
          ),
          (jobs) => storage.insert(jobs),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(done.map((o) => o[0]!.handle.dbid), Array.from({ length: 10 }, () => 1))
      }
      assert.isTrue(one.statements() >= 3, "at least one batch per round")
      assert.isTrue(Option.isNone(yield* Fiber.poll(held)), "shard 2's caller still waits")
      // A call spanning both shards waits for both: its shard-1 job is stored, its shard-2 job waits.
      assert.isTrue(Option.isNone(yield* Fiber.poll(mixed)))
      yield* Deferred.succeed(release, undefined)
      const [stored] = yield* Fiber.join(held)
      assert.strictEqual(stored!.handle.dbid, 2)
      assert.deepStrictEqual((yield* Fiber.join(mixed)).map((o) => o.handle.dbid), [1, 2])
    }))
})
