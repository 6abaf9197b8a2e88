// A job's life on MariaDB and a real gearmand (docs/job-life.md): attempts used up make a job
// dead, the CLI lists, shows and retries it, and it runs; a v1 database (Perl's table, not
// migrated) keeps running with one warning and failures that only back off.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, Option, Ref } from "effect"
import { Gearman } from "../../src/gearman/Gearman.js"
import { WorkException } from "../../src/gearman/errors.js"
import * as Client from "../../src/roles/Client.js"
import * as Controller from "../../src/roles/Controller.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import * as Migrate from "../../src/storage/migrate.js"
import { Storage } from "../../src/storage/Storage.js"
import { eventually, gearmand } from "../gearman/gearmand.js"
import { garivini } from "../support/cli.js"
import { env } from "../support/e2e.js"
import { adminQuery, mysqlHost, mysqlPort, shardConfig, testShards } from "../support/mysql.js"

const urlOf = (database: string) => `mysql://root@${mysqlHost}:${mysqlPort}/${database}`

/** A database holding the Perl original's table only (schema.sql by hand, no migration): v1. */
const perlDatabase = Effect.acquireRelease(
  Effect.gen(function*() {
    const database = `garivini_v1_${process.pid}_${Date.now().toString(36)}`
    yield* adminQuery(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`)
    for (const statement of Migrate.schemaStatements())
      yield* adminQuery(statement.replace("job", `\`${database}\`.job`))
    return shardConfig(1, database)
  }),
  (shard) => adminQuery(`DROP DATABASE IF EXISTS \`${shard.database}\``)
)

describe("a job's life on MariaDB and gearmand", () => {
  it.scopedLive(
    "attempts used up: dead, listed with its last error, shown, retried by the CLI, and then it runs",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        const db = urlOf(shard!.database)
        const runs = yield* Ref.make(0)
        yield* Effect.gen(function*() {
          // Fails its first two runs (a typed failure, then a defect), succeeds from the third.
          yield* Worker.serve({
            flaky: () =>
              Effect.flatMap(Ref.updateAndGet(runs, (n) => n + 1), (n) =>
                n === 1
                  ? Worker.fail("disk full\u0007 on /var")
                  : n === 2
                  ? Effect.die(new Error("handler crashed"))
                  : Effect.void)
          }, { maxAttempts: 2 })
          yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis", lease: "1 hour" }))
          const { handle } = yield* Client.insertJob({ funcname: "flaky", arg: "x" })
          const id = `${handle.dbid}:${handle.jobid}`
          const stored = Effect.flatMap(Storage, (s) => Effect.map(s.get(handle), Option.getOrThrow))

          // First failure: retrying (backing off 2 minutes), its error stored.
          yield* eventually(Effect.map(stored, (j) => j.failcount === 1), "the first failure to be recorded")
          const shown = yield* garivini("jobs", "show", id, "--db", db, "--json")
          const first = JSON.parse(shown.stdout)
          assert.deepStrictEqual(
            [first.state, first.failcount, first.last_error, first.last_error_attempt, first.ended],
            ["retrying", 1, "disk full\\u0007 on /var", 1, null]
          )
          // Made due before its backoff ends (--force: a backing-off job looks like a dispatched one).
          const forced = yield* garivini("jobs", "retry", id, "--db", db, "--force")
          assert.strictEqual(forced.code, 0, forced.stderr)

          // Second failure, the last of two attempts: dead, and not run again.
          yield* eventually(Effect.map(stored, (j) => j.ended === "dead"), "the job to die")
          const dead = yield* garivini("jobs", "dead", "--db", db)
          assert.strictEqual(dead.code, 0, dead.stderr)
          assert.match(
            dead.stdout,
            new RegExp(`^HANDLE\\s+FUNCTION\\s+ATTEMPTS\\s+DIED\\s+LAST ERROR\\n${id}\\s+flaky\\s+2\\s+\\d{4}-`)
          )
          assert.include(dead.stdout, "handler crashed")
          assert.include(dead.stdout, "1 dead job(s)")
          const table = yield* garivini("jobs", "show", id, "--db", db)
          assert.match(table.stdout, /state\s+dead/)
          assert.match(table.stdout, /ended\s+dead/)
          assert.match(table.stdout, /last_error_attempt\s+2/)
          assert.match(table.stdout, /last_error:\n(.|\n)*handler crashed/)
          const status = JSON.parse((yield* garivini("status", "--db", db, "--gearmand", gd.server, "--json")).stdout)
          assert.deepStrictEqual(
            status.functions.map((f: Record<string, unknown>) => [f["function"], f["dead"], f["due"], f["retrying"]]),
            [["flaky", 1, 0, 0]]
          )
          yield* Effect.sleep("500 millis")
          assert.strictEqual(yield* Ref.get(runs), 2, "a dead job is not run")

          // Retried by the CLI: due with a fresh set of attempts; the third run succeeds and deletes it.
          const retried = yield* garivini("jobs", "retry", id, "--db", db)
          assert.strictEqual(retried.code, 0, retried.stderr)
          assert.include(retried.stdout, "was dead")
          yield* eventually(
            Effect.flatMap(Storage, (s) => Effect.map(s.get(handle), Option.isNone)),
            "the retried job to run and be completed"
          )
          assert.strictEqual(yield* Ref.get(runs), 3)
          const none = yield* garivini("jobs", "dead", "--db", db, "--json")
          assert.strictEqual(none.stdout, "")
        }).pipe(Effect.scoped, Effect.provide(env([shard!], [gd.server])))
      }),
    90_000
  )

  it.scopedLive(
    "the Controller stores a WORK_EXCEPTION's data and a timeout as the last error; dead at its maxAttempts",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        yield* Effect.gen(function*() {
          const gearman = yield* Gearman
          yield* gearman.serve({
            explode: () => Effect.fail(new WorkException({ data: `kaboom: ${"detail ".repeat(20)}` })),
            stall: () => Effect.never
          }, { concurrency: 4 })
          yield* Controller.serve({ maxAttempts: 1, timeout: "1 second" })
          yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis", lease: "1 hour" }))
          const [exploded, stalled] = yield* Client.insertJobs([
            { funcname: "explode", flag: "controller" },
            { funcname: "stall", flag: "controller" }
          ])
          const storage = yield* Storage
          const deadJob = (h: typeof exploded) =>
            Effect.flatMap(storage.get(h!.handle), (j) =>
              Option.isSome(j) && j.value.ended === "dead" ? Effect.succeed(j.value) : Effect.fail("not yet"))
          yield* eventually(Effect.isSuccess(deadJob(exploded)), "the exploding job to die")
          const e = yield* deadJob(exploded).pipe(Effect.orDie)
          // The whole exception (not the log line's short quote of it), with its attempt.
          assert.strictEqual(e.lastError, `WORK_EXCEPTION: kaboom: ${"detail ".repeat(20)}`)
          assert.deepStrictEqual([e.lastErrorAttempt, e.failcount], [1, 1])
          yield* eventually(Effect.isSuccess(deadJob(stalled)), "the stalled job to time out and die")
          const t = yield* deadJob(stalled).pipe(Effect.orDie)
          assert.include(t.lastError!, "no answer from stall within 1000 ms")
        }).pipe(Effect.scoped, Effect.provide(env([shard!], [gd.server])))
      }),
    60_000
  )

  it.scopedLive("jobs retry --dead and jobs purge act only on what they name", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const db = urlOf(shard!.database)
      const handles = yield* Effect.gen(function*() {
        const kill = (funcname: string) =>
          Effect.flatMap(Client.insertJob({ funcname }), ({ handle }) =>
            Effect.as(Client.failedJob(handle, { error: "gone", maxAttempts: 1 }), handle))
        return [
          yield* kill("a"),
          yield* kill("a"),
          yield* kill("b"),
          (yield* Client.insertJob({ funcname: "a" })).handle
        ]
      }).pipe(Effect.provide(env([shard!], [])))
      const [a1, a2, b1, live] = handles.map((h) =>
        `${h.dbid}:${h.jobid}`
      )
      // Refused without --dead or --cancelled, and with both.
      const bare = yield* garivini("jobs", "purge", "--db", db, "--older-than", "0")
      assert.strictEqual(bare.code, 2)
      assert.include(bare.stderr, "--dead or --cancelled")
      assert.strictEqual(
        (yield* garivini("jobs", "purge", "--db", db, "--dead", "--cancelled", "--older-than", "0")).code,
        2
      )
      // Died just now: not older than a day.
      const young = yield* garivini("jobs", "purge", "--db", db, "--dead", "--older-than", "1d")
      assert.strictEqual(young.stdout, "deleted 0 dead job(s)\n")
      // Backdated a week: a's dead go; b's stay (another function), the live job stays.
      yield* adminQuery(`UPDATE \`${shard!.database}\`.job SET ended_at = ended_at - 8 * 86400`)
      const purged = yield* garivini("jobs", "purge", "--db", db, "--dead", "--older-than", "7d", "--function", "a")
      assert.strictEqual(purged.stdout, "deleted 2 dead job(s) of a\n", purged.stderr)
      assert.strictEqual((yield* garivini("jobs", "show", a1!, "--db", db)).code, 1)
      assert.strictEqual((yield* garivini("jobs", "show", a2!, "--db", db)).code, 1)
      assert.strictEqual((yield* garivini("jobs", "show", live!, "--db", db)).code, 0)
      assert.strictEqual(
        (yield* garivini("jobs", "purge", "--db", db, "--cancelled", "--older-than", "0")).stdout,
        "deleted 0 cancelled job(s)\n"
      )
      // retry --dead: every dead job (of b), due now.
      const retried = yield* garivini("jobs", "retry", "--db", db, "--dead")
      assert.strictEqual(retried.stdout, "made 1 dead job(s) due\n", retried.stderr)
      assert.strictEqual(JSON.parse((yield* garivini("jobs", "show", b1!, "--db", db, "--json")).stdout).state, "due")
    }), 60_000)

  it.scopedLive(
    "jobs cancel: a cancelled due job never runs, is listed as cancelled and purged; a dispatched one is refused without --force",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gd = yield* gearmand
        const db = urlOf(shard!.database)
        const ran = yield* Ref.make<ReadonlyArray<string>>([])
        yield* Effect.gen(function*() {
          const idOf = (h: { readonly dbid: number; readonly jobid: number }) => `${h.dbid}:${h.jobid}`
          // Stored due before anything runs; cancelled by the CLI.
          const doomed = idOf((yield* Client.insertJob({ funcname: "cx", arg: "doomed" })).handle)
          const cancelled = yield* garivini("jobs", "cancel", doomed, "--db", db)
          assert.deepStrictEqual([cancelled.code, cancelled.stdout], [0, `job ${doomed} cancelled\n`], cancelled.stderr)
          const again = yield* garivini("jobs", "cancel", doomed, "--db", db)
          assert.deepStrictEqual([again.code, again.stdout], [0, `job ${doomed} is cancelled already\n`])
          assert.strictEqual((yield* garivini("jobs", "cancel", "1:999999", "--db", db)).code, 1)

          // A runner and a worker: the next job runs, the cancelled one never does.
          yield* Worker.serve({
            cx: (job) => Ref.update(ran, (l) => [...l, Buffer.from(job.arg).toString()])
          })
          yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis", lease: "60 seconds" }))
          yield* Client.insertJob({ funcname: "cx", arg: "fine" })
          yield* eventually(Effect.map(Ref.get(ran), (l) => l.includes("fine")), "the live job to run")
          yield* Effect.sleep("500 millis")
          assert.deepStrictEqual(yield* Ref.get(ran), ["fine"])
          const listed = yield* garivini("jobs", "list", "--db", db, "--state", "cancelled", "--json")
          assert.deepStrictEqual(
            listed.stdout.trim().split("\n").map((l) => {
              const j = JSON.parse(l)
              return [j.handle, j.state, j.ended]
            }),
            [[doomed, "cancelled", "cancelled"]]
          )

          // Claimed by the runner with no worker for it: in a job server's hands, so refused.
          const held = (yield* Client.insertJob({ funcname: "unserved" })).handle
          const storage = yield* Storage
          yield* eventually(
            Effect.map(storage.list({ funcname: "unserved", state: "dispatched" }), (l) => l.length === 1),
            "the unserved job to be dispatched"
          )
          const refused = yield* garivini("jobs", "cancel", idOf(held), "--db", db, "--lease", "60")
          assert.strictEqual(refused.code, 1)
          assert.include(refused.stderr, "may still run once")
          assert.include(refused.stderr, "kept as cancelled")
          assert.include(refused.stderr, "--force")
          assert.isNull(Option.getOrThrow(yield* storage.get(held)).ended)
          const forced = yield* garivini("jobs", "cancel", idOf(held), "--db", db, "--lease", "60", "--force")
          assert.strictEqual(forced.code, 0, forced.stderr)
          assert.strictEqual(Option.getOrThrow(yield* storage.get(held)).ended, "cancelled")

          // Purged once old enough (backdated a week).
          yield* adminQuery(`UPDATE \`${shard!.database}\`.job SET ended_at = ended_at - 8 * 86400`)
          const purged = yield* garivini("jobs", "purge", "--db", db, "--cancelled", "--older-than", "7d")
          assert.strictEqual(purged.stdout, "deleted 2 cancelled job(s)\n", purged.stderr)
          assert.strictEqual((yield* garivini("jobs", "show", doomed, "--db", db)).code, 1)
        }).pipe(Effect.scoped, Effect.provide(env([shard!], [gd.server])))
      }),
    90_000
  )

  it.scopedLive(
    "a v1 database (Perl's table, no migration) runs as before, with one warning naming `garivini migrate`",
    () =>
      Effect.gen(function*() {
        const shard = yield* perlDatabase
        const gd = yield* gearmand
        const lines: Array<string> = []
        const collecting = Logger.replace(
          Logger.defaultLogger,
          Logger.map(Logger.logfmtLogger, (line) => void lines.push(line))
        )
        const runs = yield* Ref.make(0)
        yield* Effect.gen(function*() {
          yield* Worker.serve({ doomed: () => Effect.zipRight(Ref.update(runs, (n) => n + 1), Worker.fail("no")) }, {
            maxAttempts: 1
          })
          yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis", lease: "1 hour" }))
          const { handle } = yield* Client.insertJob({ funcname: "doomed" })
          const storage = yield* Storage
          yield* eventually(
            Effect.map(storage.get(handle), (j) => Option.isSome(j) && j.value.failcount === 1),
            "the failure to be recorded"
          )
          // One attempt allowed, but no dead state on v1: it backs off as before, no last error kept.
          const job = Option.getOrThrow(yield* storage.get(handle))
          assert.deepStrictEqual([job.ended, job.lastError, job.leasedUntil], [null, null, null])
          assert.isAbove(job.runAfter, Date.now() / 1000 + 60)
          assert.isFalse(yield* storage.jobLife(1))
          assert.deepStrictEqual((yield* storage.list({ state: "retrying" })).map((j) => j.jobid), [handle.jobid])
          assert.deepStrictEqual(yield* storage.list({ state: "dead" }), [])
          assert.strictEqual(yield* storage.retryDead({}), 0)
          assert.strictEqual(yield* storage.purgeEnded("dead", 0), 0)
          // Cancel needs the `ended` column: a typed error naming the command that adds it.
          const refused = yield* Effect.flip(Client.cancelJob(handle))
          assert.strictEqual(refused._tag, "JobLifeMissing")
          assert.include(refused.message, "garivini migrate")
          const [counts] = yield* storage.counts()
          assert.deepStrictEqual([counts!.retrying, counts!.dead, counts!.dispatched], [1, 0, 0])
          // No per-minute counts table (migration 0006): the failure above was not counted, and said so.
          assert.deepStrictEqual((yield* storage.throughput(1)).missing, [1])
          // A dispatcher's held leases on v1: by run_after alone (no leased_until to write).
          const { handle: held } = yield* Client.insertJob({ funcname: "held-v1", runAt: "+3600" })
          const lease = Option.getOrThrow(yield* storage.get(held)).runAfter
          assert.deepStrictEqual(yield* storage.extendLeases(1, [{ jobid: held.jobid, lease }], lease + 60), [
            held.jobid
          ])
          const now = Math.floor(Date.now() / 1000)
          assert.strictEqual(yield* storage.releaseLeases(1, [{ jobid: held.jobid, lease: lease + 60 }], now, 30), 1)
          assert.isAtMost(Option.getOrThrow(yield* storage.get(held)).runAfter, now + 3600, "due now, or claimed since")
          // A job claimed on v1 shows as scheduled (no lease column), as a Perl QueueRunner's claim does.
          yield* Client.insertJob({ funcname: "unserved" })
          yield* eventually(
            Effect.map(storage.list({ funcname: "unserved", state: "scheduled" }), (l) => l.length === 1),
            "the unserved job to be claimed"
          )
        }).pipe(Effect.scoped, Effect.provide(env([shard], [gd.server])), Effect.provide(collecting))
        assert.strictEqual(yield* Ref.get(runs), 1)
        const warnings = lines.filter((l) => l.includes("lacks migration 0002_job_life"))
        assert.strictEqual(warnings.length, 1, lines.join("\n"))
        assert.include(warnings[0], "level=WARN")
        assert.include(warnings[0], "garivini migrate")
        const chartOff = lines.filter((l) => l.includes("no garivini_throughput table (migration 0006_throughput)"))
        assert.strictEqual(chartOff.length, 1, lines.join("\n"))

        // The CLI on the same database: the warning once on stderr, the answer as usual.
        const status = yield* garivini("status", "--db", urlOf(shard.database), "--gearmand", gd.server, "--json")
        assert.strictEqual(status.code, 0, status.stderr)
        assert.strictEqual(status.stderr.split("\n").filter((l) => l.includes("0002_job_life")).length, 1)
        // Migrated: the features are on (the next process sees the columns).
        const migrated = yield* garivini("migrate", "--db", urlOf(shard.database))
        assert.strictEqual(migrated.code, 0, migrated.stderr)
        const after = yield* garivini("status", "--db", urlOf(shard.database), "--gearmand", gd.server, "--json")
        assert.strictEqual(after.stderr, "")
      }),
    90_000
  )
})
