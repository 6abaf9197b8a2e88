// The built `garivini` command, run as an operator would, over each storage backend: one
// scenario, looped over MariaDB and a SQLite file (every process shares the file).
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import type { Scope } from "effect"
import { Effect } from "effect"
import { eventually, gearmandServer } from "./gearman/gearmand.js"
import { background, garivini, listJobs } from "./support/cli.js"
import { tempDir } from "./support/files.js"
import { adminQuery, mysqlHost, mysqlPort } from "./support/mysql.js"

interface Backend {
  readonly name: string
  /** A fresh, empty database: its `--db` value and what `migrate` says it applied the schema to. */
  readonly make: Effect.Effect<{ readonly db: string; readonly applied: string }, never, Scope.Scope>
}

const backends: ReadonlyArray<Backend> = [
  {
    name: "MariaDB",
    make: Effect.gen(function*() {
      const database = `garivini_test_cli_${process.pid}`
      yield* Effect.acquireRelease(
        adminQuery(`DROP DATABASE IF EXISTS \`${database}\``),
        () => adminQuery(`DROP DATABASE IF EXISTS \`${database}\``)
      )
      return {
        db: `mysql://root@${mysqlHost}:${mysqlPort}/${database}`,
        applied: `schema applied to 1 shard(s): 1=${database}`
      }
    })
  },
  {
    name: "SQLite",
    make: Effect.map(tempDir("garivini-cli-sqlite-"), (dir) => {
      const file = join(dir, "garivini.db")
      return { db: `sqlite:${file}`, applied: `schema applied to SQLite file ${file}` }
    })
  }
]

describe.each(backends)("garivini CLI over $name", (backend) => {
  it.scopedLive(
    "migrate, schema, inject (direct and --pure), run, consume, status, jobs list/show/delete",
    () =>
      Effect.gen(function*() {
        const { applied, db } = yield* backend.make
        const gearmand = yield* gearmandServer
        const connect = ["--db", db, "--gearmand", gearmand]
        const migrated = yield* garivini("migrate", "--db", db)
        assert.strictEqual(migrated.code, 0, migrated.stderr)
        assert.include(migrated.stdout, applied)
        assert.strictEqual((yield* garivini("migrate", "--db", db)).code, 0, "migrate is idempotent")
        assert.include((yield* garivini("schema")).stdout, "CREATE TABLE IF NOT EXISTS job")

        // Jobs for a function nobody serves yet: inspect, then delete one.
        assert.include(
          (yield* garivini("inject", ...connect, "--count", "3", "--function", "parked", "--arg", "p")).stdout,
          "stored 3 job(s)"
        )
        const parked = yield* listJobs(db, "--function", "parked")
        assert.deepStrictEqual(parked.map((j) => j.handle), ["1:1", "1:2", "1:3"])
        const shown = yield* garivini("jobs", "show", "--db", db, "1:1")
        assert.include(shown.stdout, "parked")
        assert.include(shown.stdout, "1 bytes: p")
        assert.include((yield* garivini("jobs", "delete", "--db", db, "1:1")).stdout, "deleted")
        assert.strictEqual((yield* garivini("jobs", "show", "--db", db, "1:1")).code, 1)
        assert.strictEqual((yield* listJobs(db, "--function", "parked")).length, 2)

        // Every role in one process, an example worker, jobs both ways.
        const run = yield* background("run", ...connect, "--batch-run-sleep", "0.1")
        const consume = yield* background("consume", ...connect, "--function", "work")
        yield* eventually(
          Effect.map(run.errors, (e) => e.includes("running queue-runner")),
          "the roles to start",
          30_000
        )
        assert.include(
          (yield* garivini("inject", ...connect, "--count", "20", "--function", "work", "--arg", "direct")).stdout,
          "stored 20"
        )
        const pure = yield* garivini(
          "inject",
          ...connect,
          "--count",
          "5",
          "--function",
          "work",
          "--arg",
          "pure",
          "--pure"
        )
        assert.strictEqual(pure.code, 0, pure.stderr)
        assert.include(pure.stdout, "injected 5 job(s) for work through inject_jobs")
        yield* eventually(
          Effect.map(listJobs(db, "--function", "work"), (jobs) => jobs.length === 0),
          "the work jobs to complete",
          60_000
        )
        const printed = (yield* consume.output).split("\n").filter((l) => l.startsWith("Hay it's a job"))
        assert.strictEqual(printed.filter((l) => l.endsWith(" direct")).length, 20)
        assert.strictEqual(printed.filter((l) => l.endsWith(" pure")).length, 5)
        const status = yield* garivini("status", ...connect, "--json")
        const parsed = JSON.parse(status.stdout)
        // The runner dispatched the unserved `parked` jobs: leased in the DB, queued in gearmand.
        const parkedStatus = parsed.functions.find((f: { function: string }) => f.function === "parked")
        assert.deepStrictEqual(
          [parkedStatus.shard, parkedStatus.due, parkedStatus.dispatched, parkedStatus.gearmand_queued],
          [1, 0, 2, 2]
        )
        assert.isNull(parsed.gearmand_error)
        assert.deepStrictEqual(parsed.unavailable_shards, [])
        const table = yield* garivini("status", ...connect)
        assert.match(table.stdout, /SHARD\s+FUNCTION\s+DUE/)
        assert.strictEqual((yield* consume.stop("SIGTERM")).code, 0)
        assert.strictEqual((yield* run.stop("SIGTERM")).code, 0)
      }),
    120_000
  )
})
