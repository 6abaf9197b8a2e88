// A shard whose connections stall (no bytes either way, no error) against real MariaDB: the
// other shard's inserts go on, and the stalled one's fail within the statement timeout.
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either, Fiber, Option, Schema } from "effect"
import type { ShardConfig } from "../../src/storage/targets.js"
import * as MysqlShard from "../../src/storage/sql/mysql.js"
import { clientConfig, openClient } from "../../src/storage/sql/mysql.js"
import { make } from "../../src/storage/Storage.js"
import { adminQuery, mysqlHost, mysqlPort, testShards } from "../support/mysql.js"
import { makeProxy } from "../support/proxy.js"
import { keyFor } from "./contract.js"

const ArgRows = Schema.Array(Schema.Struct({ arg: Schema.String, n: Schema.Number }))
/** Each stored arg of both databases with how many rows hold it. */
const argsStored = (one: ShardConfig, two: ShardConfig) =>
  adminQuery(
    `SELECT CAST(arg AS CHAR) AS arg, COUNT(*) AS n FROM (SELECT arg FROM \`${one.database}\`.job UNION ALL ` +
      `SELECT arg FROM \`${two.database}\`.job) AS a GROUP BY arg`
  ).pipe(Effect.flatMap(([rows]) => Schema.decodeUnknown(ArgRows)(rows)))

describe("a stalled shard", () => {
  it.scopedLive(
    "inserts to the healthy shard complete during the stall; the stalled shard's fails as outcome-unknown after the statement timeout",
    () =>
      Effect.gen(function*() {
        const [one, two] = yield* testShards(2)
        const proxy = yield* makeProxy({ host: mysqlHost, port: mysqlPort })
        const options = { statementTimeout: Duration.millis(1500) }
        const backends = yield* Effect.all([
          MysqlShard.make(one!, options),
          // One connection: the next insert there shows whether the timed-out one came back.
          MysqlShard.make({ ...two!, port: proxy.port, maxConnections: 1 }, options)
        ])
        const storage = yield* make(backends, { coalesceInserts: true })
        const job = (shard: number, name: string) => ({
          funcname: "stall",
          uniqkey: keyFor(shard, 2, `${name}-`),
          arg: name,
          runAfter: 0
        })
        // Both pools connected (and shard 2's one connection idle in its pool) before the stall.
        yield* storage.insert([job(0, "warm-1")])
        yield* storage.insert([job(1, "warm-2")])

        yield* proxy.stall
        const stalled = yield* Effect.fork(Effect.either(storage.insert([job(1, "stalled")])))
        // Its batch takes shard 2's only connection and sends the INSERT into the stall.
        yield* Effect.sleep("200 millis")
        const healthy = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => [job(0, `healthy-${i}`)]),
          (jobs) => storage.insert(jobs),
          { concurrency: "unbounded" }
        )
        // Done while shard 2's statement is still unanswered: they waited for no other shard.
        assert.isTrue(Option.isNone(yield* Fiber.poll(stalled)), "the stalled insert is still pending")
        assert.deepStrictEqual(healthy.map((r) => r[0]!.handle.dbid), Array.from({ length: 20 }, () => 1))

        const outcome = yield* Fiber.join(stalled)
        assert.isTrue(Either.isLeft(outcome))
        const error = Either.getLeft(outcome).pipe(Option.getOrThrow)
        assert.strictEqual(error._tag, "InsertOutcomeUnknown", error.message)
        assert.include(error.message, "statement timeout")
        if (error._tag === "InsertOutcomeUnknown") assert.strictEqual(error.dbid, 2)
        // Shard 2 cools off: jobs without a key go to shard 1 meanwhile.
        const health = yield* storage.health
        assert.isNotNull(health.find((h) => h.dbid === 2)!.avoidedUntil)
        const [floating] = yield* storage.insert([{ funcname: "stall", arg: "floating", runAfter: 0 }])
        assert.strictEqual(floating!.handle.dbid, 1)
        // The timed-out connection was closed, not pooled again: the next insert on shard 2 needs
        // a new one, which cannot connect through the stall (unreached, not a second unknown).
        const next = yield* Effect.flip(storage.insert([job(1, "during")]))
        assert.strictEqual(next._tag, "ShardUnavailable", next.message)

        yield* proxy.unstall
        const after = yield* storage.insert([job(1, "after-2"), job(0, "after-1")])
        assert.deepStrictEqual(after.map((o) => o.handle.dbid), [2, 1])
        // The stalled job again: stored once, whether or not its first INSERT reached the server.
        const [again] = yield* storage.insert([job(1, "stalled")])
        assert.strictEqual(again!.handle.dbid, 2)
        const stored = yield* argsStored(one!, two!)
        assert.deepStrictEqual(stored.filter((r) => r.n > 1), [], "no job is stored twice")
        assert.includeMembers(stored.map((r) => r.arg), ["stalled", "after-1", "after-2", "floating", "healthy-19"])
      })
  )

  it.scopedLive("a claim and a delete on a stalled connection fail after the statement timeout; nothing is lost", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const proxy = yield* makeProxy({ host: mysqlHost, port: mysqlPort })
      const backend = yield* MysqlShard.make({ ...shard!, port: proxy.port }, { statementTimeout: Duration.seconds(1) })
      const storage = yield* make([backend])
      const stored = yield* storage.insert(
        Array.from({ length: 3 }, (_, i) => ({ funcname: "c", arg: `${i}`, runAfter: 0 }))
      )
      // Three connections open and idle in the pool, so the calls below reach the stall.
      yield* Effect.all(stored.map((o) => storage.get(o.handle)), { concurrency: "unbounded" })

      yield* proxy.stall
      const claim = yield* Effect.flip(storage.claimDue(1, 10, "1000 seconds"))
      assert.strictEqual(claim._tag, "ShardUnavailable", claim.message)
      assert.include(claim.message, "statement timeout")
      const removed = yield* Effect.flip(storage.complete([stored[0]!.handle]))
      assert.strictEqual(removed._tag, "ShardUnavailable", removed.message)
      assert.include(removed.message, "statement timeout")

      yield* proxy.unstall
      // The claim was cut before its COMMIT (its BEGIN had no answer): it leased nothing. The
      // delete's outcome is unknown (the proxy may still pass it on), so job 0 may be gone.
      const claimed = yield* storage.claimDue(1, 10, "1000 seconds")
      assert.includeMembers(claimed.map((j) => Buffer.from(j.arg).toString()), ["1", "2"])
    }))

  it.scopedLive("abortConnection closes the driver's socket under a reserved connection", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const client = yield* openClient(clientConfig(shard!, shard!.database), yield* Effect.scope)
      const conn = yield* client.reserve
      yield* conn.executeRaw("SELECT 1", [])
      assert.isTrue(MysqlShard.abortConnection(conn))
      const after = yield* Effect.either(conn.executeRaw("SELECT 1", []))
      assert.isTrue(Either.isLeft(after), "a statement on the aborted connection fails")
      // The pool's other connections are unaffected.
      yield* client.unsafe("SELECT 1")
    }))
})
