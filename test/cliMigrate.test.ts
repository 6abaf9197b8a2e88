// `garivini migrate` and `migrate --status`, built, against MariaDB and a SQLite file.
import { existsSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { garivini } from "./support/cli.js"
import { tempDir } from "./support/files.js"
import { adminQuery, mysqlHost, mysqlPort } from "./support/mysql.js"

const schemata = (database: string) =>
  Effect.map(
    adminQuery("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [database]),
    ([rows]) => JSON.parse(JSON.stringify(rows)).length as number
  )

describe("garivini migrate", () => {
  it.scopedLive(
    "MySQL: --status changes nothing; migrate applies per shard, then is up to date; a foreign job table exits 1",
    () =>
      Effect.gen(function*() {
        const base = `garivini_climig_${process.pid}_${Date.now().toString(36)}`
        const [a, b] = [`${base}_a`, `${base}_b`]
        yield* Effect.addFinalizer(() =>
          Effect.orDie(Effect.forEach([a, b], (d) => adminQuery(`DROP DATABASE IF EXISTS \`${d}\``)))
        )
        const db = [`mysql://root@${mysqlHost}:${mysqlPort}/${a}`, `mysql://root@${mysqlHost}:${mysqlPort}/${b}`]
          .flatMap((u) => ["--db", u])
        const where = (n: number, d: string) => `shard ${n} (${d}@${mysqlHost}:${mysqlPort})`

        const pending = yield* garivini("migrate", "--status", ...db)
        assert.strictEqual(pending.code, 0, pending.stderr)
        assert.strictEqual(
          pending.stdout,
          `${
            where(1, a)
          }: (does not exist yet)\n  0001_job_table  pending\n  0002_job_life  pending\n  0003_flow_control  pending\n  0004_leases  pending\n  0005_flow_priority  pending\n  0006_throughput  pending\n  0007_traceparent  pending\n${
            where(2, b)
          }: (does not exist yet)\n  0001_job_table  pending\n  0002_job_life  pending\n  0003_flow_control  pending\n  0004_leases  pending\n  0005_flow_priority  pending\n  0006_throughput  pending\n  0007_traceparent  pending\n`
        )
        assert.strictEqual(yield* schemata(a), 0, "--status creates no database")

        const first = yield* garivini("migrate", ...db)
        assert.strictEqual(first.code, 0, first.stderr)
        assert.include(
          first.stdout,
          `${
            where(1, a)
          }: applied 0001_job_table, 0002_job_life, 0003_flow_control, 0004_leases, 0005_flow_priority, 0006_throughput, 0007_traceparent\n${
            where(2, b)
          }: applied 0001_job_table, 0002_job_life, 0003_flow_control, 0004_leases, 0005_flow_priority, 0006_throughput, 0007_traceparent\n`
        )
        const again = yield* garivini("migrate", ...db)
        assert.include(again.stdout, `${where(1, a)}: up to date\n${where(2, b)}: up to date\n`)
        const applied = yield* garivini("migrate", "--status", ...db)
        assert.match(
          applied.stdout,
          new RegExp(
            `^${
              where(1, a).replace(/[()]/g, "\\$&")
            }:\\n  0001_job_table  applied \\d{4}-\\d\\d-\\d\\dT.*\\n  0002_job_life  applied \\d{4}-`
          )
        )

        // A foreign job table on a third shard: one line, exit 1, the table left alone.
        const c = `${base}_c`
        yield* Effect.addFinalizer(() => Effect.orDie(adminQuery(`DROP DATABASE IF EXISTS \`${c}\``)))
        yield* adminQuery(`CREATE DATABASE \`${c}\``)
        yield* adminQuery(`CREATE TABLE \`${c}\`.job (jobid INT PRIMARY KEY, funcname VARCHAR(200))`)
        const foreignStatus = yield* garivini(
          "migrate",
          "--status",
          "--db",
          `mysql://root@${mysqlHost}:${mysqlPort}/${c}`
        )
        assert.include(foreignStatus.stdout, "0001_job_table  pending (adopts the existing job table)")
        const refused = yield* garivini("migrate", "--db", `mysql://root@${mysqlHost}:${mysqlPort}/${c}`)
        assert.strictEqual(refused.code, 1)
        assert.match(
          refused.stderr.trim(),
          /^garivini: shard 1 \(.*\): the existing job table is not Garivini's \(column arg is missing; .*\); it was left unchanged/
        )
        assert.strictEqual(refused.stderr.trim().split("\n").length, 1)
      }),
    120_000
  )

  it.scopedLive(
    "SQLite: --status does not create the file; migrate applies, then is up to date",
    () =>
      Effect.gen(function*() {
        const file = `${yield* tempDir("garivini-climig-")}/jobs.db`
        const db = `sqlite:${file}`
        const pending = yield* garivini("migrate", "--status", "--db", db)
        assert.strictEqual(pending.code, 0, pending.stderr)
        assert.strictEqual(
          pending.stdout,
          `SQLite file ${file}: (does not exist yet)\n  0001_job_table  pending\n  0002_job_life  pending\n  0003_flow_control  pending\n  0004_leases  pending\n  0005_flow_priority  pending\n  0006_throughput  pending\n  0007_traceparent  pending\n`
        )
        assert.isFalse(existsSync(file))
        const first = yield* garivini("migrate", "--db", db)
        assert.include(
          first.stdout,
          `SQLite file ${file}: applied 0001_job_table, 0002_job_life, 0003_flow_control, 0004_leases, 0005_flow_priority, 0006_throughput, 0007_traceparent\n`
        )
        assert.include((yield* garivini("migrate", "--db", db)).stdout, `SQLite file ${file}: up to date\n`)
        assert.match(
          (yield* garivini("migrate", "--status", "--db", db)).stdout,
          /\n {2}0001_job_table {2}applied \d{4}-.*\n {2}0002_job_life {2}applied \d{4}-/
        )
      }),
    120_000
  )
})
