// A MariaDB database migrated before migration 0005 (job priorities, concurrency limits): it keeps
// working with both off, one warning saying so, and the controls of migration 3 as they were.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import * as MysqlShard from "../../src/storage/sql/mysql.js"
import { make } from "../../src/storage/Storage.js"
import { adminQuery, testShards } from "../support/mysql.js"

describe("a database without migration 0005", () => {
  it.scopedLive("priorities are ignored, concurrency limits refused naming `garivini migrate`, one warning", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const db = `\`${shard!.database}\``
      yield* adminQuery(`ALTER TABLE ${db}.job DROP INDEX job_claim, DROP INDEX job_lease, DROP COLUMN priority`)
      yield* adminQuery(`ALTER TABLE ${db}.garivini_function DROP COLUMN concurrency`)
      yield* adminQuery(`DELETE FROM ${db}.garivini_migrations WHERE migration_id = 5`)
      const lines: Array<string> = []
      const collecting = Logger.replace(
        Logger.defaultLogger,
        Logger.map(Logger.logfmtLogger, (line) => void lines.push(line))
      )
      yield* Effect.gen(function*() {
        const storage = yield* make([yield* MysqlShard.make(shard!)])
        const now = Math.floor(Date.now() / 1000)
        yield* storage.insert([
          { funcname: "p", runAfter: now - 2, priority: "low" },
          { funcname: "p", runAfter: now - 1, priority: "high" }
        ])
        // Oldest first, as before priorities; nothing claimed says it has one.
        const claimed = yield* storage.claimDue(1, 10, "60 seconds")
        assert.deepStrictEqual(claimed.map((j) => [j.runAfter, j.priority]), [[now - 2, undefined], [
          now - 1,
          undefined
        ]])
        // Migration 3's controls work as they did.
        yield* storage.flow.setControl("p", { paused: true })
        assert.deepStrictEqual(yield* storage.flow.controls(1), [{
          funcname: "p",
          paused: true,
          rate: null,
          concurrency: null
        }])
        const refused = yield* Effect.flip(storage.flow.setControl("p", { concurrency: 3 }))
        assert.include(refused.message, "garivini migrate")
        const capped = yield* Effect.flip(storage.flow.claimCapped(1, "p", 3, 10, "60 seconds"))
        assert.include(capped.message, "0005_flow_priority")
      }).pipe(Effect.provide(collecting))
      const warnings = lines.filter((l) => l.includes("lacks migration 0005_flow_priority"))
      assert.strictEqual(warnings.length, 1, lines.join("\n"))
      assert.include(warnings[0], "level=WARN")
    }))
})
