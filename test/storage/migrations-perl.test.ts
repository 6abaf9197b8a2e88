// After every migration, Perl Garivini's own statements (docs: /work/shared/reference, §1.2) still
// run on the table: the rule that each migration is additive, checked on MariaDB.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Mysql from "mysql2/promise"
import type { ResultSetHeader, RowDataPacket } from "mysql2/promise"
import * as Migrate from "../../src/storage/migrate.js"
import { mysqlHost, mysqlPort, testShards } from "../support/mysql.js"

describe("Perl Garivini on a fully migrated database", () => {
  it.scopedLive("Client::insert_job, the QueueRunner's claim, reschedule_job and complete_job, as Perl issues them", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const status = yield* Migrate.statusShard(shard!)
      assert.isTrue(status.migrations.every((m) => m.appliedAt._tag === "Some"), "every migration applied")
      assert.deepStrictEqual(status.migrations.map((m) => m.label), [
        "0001_job_table",
        "0002_job_life",
        "0003_flow_control",
        "0004_leases",
        "0005_flow_priority",
        "0006_throughput",
        "0007_traceparent"
      ])
      const conn = yield* Effect.acquireRelease(
        Effect.promise(() =>
          Mysql.createConnection({
            host: mysqlHost,
            port: mysqlPort,
            user: "root",
            password: "",
            database: shard!.database
          })
        ),
        (c) => Effect.promise(() => c.end())
      )
      const exec = (sql: string, params: ReadonlyArray<unknown> = []) =>
        Effect.promise(() => conn.query<ResultSetHeader>(sql, [...params]))
      const select = (sql: string, params: ReadonlyArray<unknown> = []) =>
        Effect.promise(() => conn.query<Array<RowDataPacket>>(sql, [...params]))

      // Client::insert_job: every column named, flag bound as undef, run_after bound as the string
      // the Perl code builds (stored as 0 under INSERT IGNORE: the original's bug, kept).
      const INSERT =
        "INSERT IGNORE INTO job (funcname, run_after, uniqkey, coalesce, arg, flag) VALUES (?, ?, ?, ?, ?, ?)"
      const [inserted] = yield* exec(INSERT, ["perl_fn", "UNIX_TIMESTAMP() + 0", "u1", null, "hello", null])
      assert.strictEqual(inserted.affectedRows, 1)
      const jobid = inserted.insertId
      assert.isAbove(jobid, 0)
      const [duplicate] = yield* exec(INSERT, ["perl_fn", "UNIX_TIMESTAMP() + 0", "u1", null, "again", null])
      assert.strictEqual(duplicate.affectedRows, 0, "UNIQUE (funcname, uniqkey) still holds")

      // QueueRunner::_find_jobs_for_gearman: SELECT ... FOR UPDATE, then the 1000 s lease.
      yield* exec("BEGIN")
      const [due] = yield* select(
        "SELECT jobid, funcname, uniqkey, coalesce, run_after, arg, 1 AS dbid, flag, failcount FROM job WHERE run_after <= UNIX_TIMESTAMP() ORDER BY run_after LIMIT 10 FOR UPDATE"
      )
      assert.deepStrictEqual(
        due.map((
          r
        ) => [r["jobid"], r["funcname"], r["uniqkey"], r["run_after"], String(r["arg"]), r["flag"], r["failcount"]]),
        [[jobid, "perl_fn", "u1", 0, "hello", null, 0]]
      )
      const [leased] = yield* exec(`UPDATE job SET run_after = UNIX_TIMESTAMP() + 1000 WHERE jobid IN (${jobid})`)
      assert.strictEqual(leased.affectedRows, 1)
      yield* exec("COMMIT")

      // Client::reschedule_job, then Client::complete_job.
      const [rescheduled] = yield* exec(
        "UPDATE job SET run_after = UNIX_TIMESTAMP() + 30, failcount = ? WHERE jobid=?",
        [1, jobid]
      )
      assert.strictEqual(rescheduled.affectedRows, 1)
      const [[after]] = yield* select(
        "SELECT failcount, run_after > UNIX_TIMESTAMP() AS later FROM job WHERE jobid=?",
        [jobid]
      )
      assert.deepStrictEqual([after!["failcount"], after!["later"]], [1, 1])
      // Our own writes on the same row (migration 2's columns) change nothing for Perl: a job we
      // made dead keeps run_after never, so the Perl claim never picks it; its DELETE removes it.
      const [[life]] = yield* select("SELECT ended, last_error, leased_until FROM job WHERE jobid=?", [jobid])
      assert.deepStrictEqual([life!["ended"], life!["last_error"], life!["leased_until"]], [null, null, null])
      yield* exec(
        "UPDATE job SET run_after = 2147483647, ended = 'dead', ended_at = UNIX_TIMESTAMP(), last_error = 'x' WHERE jobid=?",
        [jobid]
      )
      const [none] = yield* select(
        "SELECT jobid FROM job WHERE run_after <= UNIX_TIMESTAMP() ORDER BY run_after LIMIT 10 FOR UPDATE"
      )
      assert.deepStrictEqual(none, [], "a dead job is never due for Perl's QueueRunner")
      const [deleted] = yield* exec("DELETE FROM job WHERE jobid=?", [jobid])
      assert.strictEqual(deleted.affectedRows, 1)
      const [[count]] = yield* select("SELECT COUNT(*) AS n FROM job")
      assert.strictEqual(count!["n"], 0)
    }))
})
