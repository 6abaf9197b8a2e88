// Versioned migrations on MariaDB and SQLite: a fresh database, an adopted Perl table, a foreign
// `job` table refused, a failing migration left unrecorded, two migrators at once, --status.
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Exit, Layer, Logger, Option, Schema } from "effect"
import { MYSQL, SQLITE } from "../../src/storage/migrations/0001_job_table.js"
import { clientConfig, openClient } from "../../src/storage/sql/mysql.js"
import { migrations } from "../../src/storage/migrations/index.js"
import * as Migrate from "../../src/storage/migrate.js"
import * as Tracing from "../../src/tracing/Tracing.js"
import { layer, layerSqlite, Storage } from "../../src/storage/Storage.js"
import { tempDir } from "../support/files.js"
import { adminQuery, shardConfig } from "../support/mysql.js"

let counter = 0
/** An empty database (no table), dropped with the scope; `create: false` leaves it to migrate. */
const emptyShard = (create = true) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const database = `garivini_mig_${process.pid}_${Date.now().toString(36)}_${counter++}`
      if (create) yield* adminQuery(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`)
      return shardConfig(1, database)
    }),
    (shard) => adminQuery(`DROP DATABASE IF EXISTS \`${shard.database}\``)
  )

const ShowCreate = Schema.Array(Schema.Struct({ "Create Table": Schema.String }))
const showCreate = (database: string, table = "job") =>
  adminQuery(`SHOW CREATE TABLE \`${database}\`.\`${table}\``).pipe(
    Effect.flatMap(([rows]) => Schema.decodeUnknown(ShowCreate)(rows)),
    Effect.map((rows) => rows[0]!["Create Table"])
  )
const Names = Schema.Array(Schema.Struct({ name: Schema.String }))
const tables = (database: string) =>
  adminQuery("SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", [
    database
  ]).pipe(
    Effect.flatMap(([rows]) => Schema.decodeUnknown(Names)(rows)),
    Effect.map((rows) => rows.map((r) => r.name))
  )
const Recorded = Schema.Array(Schema.Struct({ migration_id: Schema.Number, name: Schema.String }))
const recorded = (database: string) =>
  adminQuery(`SELECT migration_id, name FROM \`${database}\`.garivini_migrations ORDER BY migration_id`).pipe(
    Effect.flatMap(([rows]) => Schema.decodeUnknown(Recorded)(rows)),
    Effect.map((rows) => rows.map((r) => `${r.migration_id}_${r.name}`))
  )

/** schema.sql's CREATE TABLE with its columns changed by `edit` (a table that is not Perl's). */
const schemaWith = (edit: (sql: string) => string) => edit(Migrate.schemaStatements()[0]!)

const normalized = (s: string) => s.replace(/\s+/g, " ").trim()

/**
 * A fresh MariaDB database migrated without `missing`, and `body` run on a Storage over it
 * (with `extra` provided); asserts that opening it warned once, naming the migration and
 * `garivini migrate`.
 */
const withoutMigration = <E>(
  missing: keyof typeof migrations,
  body: Effect.Effect<void, E, Storage>,
  extra: Layer.Layer<never> = Layer.empty
) =>
  Effect.gen(function*() {
    const shard = yield* emptyShard()
    const { [missing]: _missing, ...others } = migrations
    yield* mysqlClient(shard.database, Migrate.applyOf(others))
    const lines: Array<string> = []
    const collecting = Logger.replace(
      Logger.defaultLogger,
      Logger.map(Logger.logfmtLogger, (line) => void lines.push(line))
    )
    yield* body.pipe(
      Effect.provide(layer({ shards: [shard] }).pipe(Layer.orDie)),
      Effect.provide(extra),
      Effect.provide(collecting)
    )
    const warnings = lines.filter((l) => l.includes(`lacks migration ${missing}`))
    assert.strictEqual(warnings.length, 1, lines.join("\n"))
    assert.include(warnings[0], "level=WARN")
    assert.include(warnings[0], "garivini migrate")
  })

describe("migrations on MariaDB", () => {
  it.scopedLive("a fresh database gets migration 1 (schema.sql's table) and 2 (the job's life), once; status shows them applied", () =>
    Effect.gen(function*() {
      const shard = yield* emptyShard(false)
      const pending = yield* Migrate.statusShard(shard)
      assert.isFalse(pending.exists)
      assert.deepStrictEqual(pending.migrations.map((m) => [m.label, Option.isSome(m.appliedAt)]), [
        ["0001_job_table", false],
        ["0002_job_life", false],
        ["0003_flow_control", false],
        ["0004_leases", false],
        ["0005_flow_priority", false],
        ["0006_throughput", false],
        ["0007_traceparent", false]
      ])
      assert.deepStrictEqual(yield* tables(shard.database), [], "--status creates nothing")
      const before = Date.now()
      const [first] = yield* Migrate.migrate([shard])
      assert.deepStrictEqual(first, {
        target: `shard 1 (${shard.database}@127.0.0.1:3306)`,
        applied: [
          "0001_job_table",
          "0002_job_life",
          "0003_flow_control",
          "0004_leases",
          "0005_flow_priority",
          "0006_throughput",
          "0007_traceparent"
        ],
        adopted: false
      })
      const [again] = yield* Migrate.migrate([shard])
      assert.deepStrictEqual(again!.applied, [])
      assert.deepStrictEqual(yield* tables(shard.database), [
        "garivini_function",
        "garivini_migrations",
        "garivini_rate_bucket",
        "garivini_schedule",
        "garivini_throughput",
        "job"
      ])
      assert.deepStrictEqual(yield* recorded(shard.database), [
        "1_job_table",
        "2_job_life",
        "3_flow_control",
        "4_leases",
        "5_flow_priority",
        "6_throughput",
        "7_traceparent"
      ])
      const status = yield* Migrate.statusShard(shard)
      assert.isTrue(status.exists)
      const [one] = status.migrations
      assert.strictEqual(one!.label, "0001_job_table")
      const at = Option.getOrThrow(one!.appliedAt).getTime()
      assert.isTrue(at >= before - 2000 && at <= Date.now() + 1000, `applied at ${at}`)
    }))

  it.scopedLive("a Perl database (schema.sql applied by hand, rows in it) is adopted as migration 1; migration 2 only adds nullable columns", () =>
    Effect.gen(function*() {
      const shard = yield* emptyShard()
      for (const statement of Migrate.schemaStatements())
        yield* adminQuery(statement.replace("job", `\`${shard.database}\`.job`))
      yield* adminQuery(`INSERT INTO \`${shard.database}\`.job (funcname, arg) VALUES ('perl', 'x')`)
      const created = yield* showCreate(shard.database)
      const status = yield* Migrate.statusShard(shard)
      assert.isTrue(status.adoptsJobTable)
      const [result] = yield* Migrate.migrate([shard])
      assert.isTrue(result!.adopted)
      assert.deepStrictEqual(result!.applied, [
        "0001_job_table",
        "0002_job_life",
        "0003_flow_control",
        "0004_leases",
        "0005_flow_priority",
        "0006_throughput",
        "0007_traceparent"
      ])
      // The Perl table's definition is there as it was, the new columns after it.
      const after = yield* showCreate(shard.database)
      const columnLines = (sql: string) => sql.split("\n").filter((l) => /^\s+`/.test(l))
      assert.deepStrictEqual(columnLines(after).slice(0, columnLines(created).length), columnLines(created))
      assert.deepStrictEqual(columnLines(after).slice(columnLines(created).length).map((l) => l.trim()), [
        "`last_error` text DEFAULT NULL,",
        "`last_error_at` int(10) unsigned DEFAULT NULL,",
        "`last_error_attempt` tinyint(3) unsigned DEFAULT NULL,",
        "`ended` enum('dead','cancelled') DEFAULT NULL,",
        "`ended_at` int(10) unsigned DEFAULT NULL,",
        "`leased_until` int(10) unsigned DEFAULT NULL,",
        "`lease_token` char(32) CHARACTER SET ascii COLLATE ascii_bin DEFAULT NULL,",
        "`heartbeat_at` int(10) unsigned DEFAULT NULL,",
        "`priority` tinyint(4) NOT NULL DEFAULT 0,",
        "`traceparent` varchar(55) CHARACTER SET ascii COLLATE ascii_bin DEFAULT NULL,"
      ])
      assert.include(after, "KEY `job_claim` (`priority` DESC,`run_after`)")
      assert.include(after, "KEY `job_lease` (`funcname`,`leased_until`)")
      assert.deepStrictEqual(yield* recorded(shard.database), [
        "1_job_table",
        "2_job_life",
        "3_flow_control",
        "4_leases",
        "5_flow_priority",
        "6_throughput",
        "7_traceparent"
      ])
      const [rows] = yield* adminQuery(`SELECT funcname, ended, last_error FROM \`${shard.database}\`.job`)
      assert.deepStrictEqual(JSON.parse(JSON.stringify(rows)), [{ funcname: "perl", ended: null, last_error: null }])
    }))

  it.scopedLive("a job table that is not Perl's (a column missing, a column of another type) is refused and left alone", () =>
    Effect.gen(function*() {
      for (
        const [edit, problem] of [
          [(s: string) => s.replace(/\n\s*failcount[^\n]*\n/, "\n"), "column failcount is missing"],
          [
            (s: string) => s.replace("run_after INT UNSIGNED", "run_after VARCHAR(20)"),
            "column run_after is varchar(20)"
          ],
          [
            (s: string) => s.replace("UNIQUE (funcname, uniqkey)", "INDEX (funcname, uniqkey)"),
            "no UNIQUE (funcname, uniqkey)"
          ]
        ] as const
      ) {
        const shard = yield* emptyShard()
        yield* adminQuery(schemaWith(edit).replace("job", `\`${shard.database}\`.job`))
        const created = yield* showCreate(shard.database)
        const error = yield* Effect.flip(Migrate.migrate([shard]))
        assert.strictEqual(error._tag, "JobTableMismatch")
        assert.include(error.message, problem)
        assert.include(error.message, `shard 1 (${shard.database}@`)
        assert.strictEqual(yield* showCreate(shard.database), created)
        assert.deepStrictEqual(yield* tables(shard.database), ["job"], "not even the migrations table is made")
      }
    }))

  it.scopedLive("a database without migration 4 (v3) runs with leases off: one warning naming it, jobs stored, claimed and deleted as before", () =>
    withoutMigration(
      "0004_leases",
      Effect.gen(function*() {
        const storage = yield* Storage
        assert.isTrue(yield* storage.jobLife(1))
        assert.isFalse(yield* storage.leases(1))
        const [stored] = yield* storage.insert([{ funcname: "v3", runAfter: 0 }])
        const claimed = yield* storage.claimDue(1, 10, "30 seconds")
        assert.deepStrictEqual(claimed.map((j) => j.jobid), [stored!.handle.jobid])
        // A dispatcher's held leases work by run_after / leased_until, without the heartbeat condition.
        const [row] = yield* storage.list({})
        const held = [{ jobid: stored!.handle.jobid, lease: row!.runAfter }]
        assert.deepStrictEqual(yield* storage.extendLeases(1, held, row!.runAfter + 60), [stored!.handle.jobid])
        const now = Math.floor(Date.now() / 1000)
        assert.strictEqual(
          yield* storage.releaseLeases(1, [{ jobid: stored!.handle.jobid, lease: row!.runAfter + 60 }], now, 30),
          1
        )
        const [freed] = yield* storage.list({})
        assert.deepStrictEqual([freed!.runAfter, freed!.leasedUntil], [now, null])
        assert.strictEqual(yield* storage.complete([stored!.handle]), 1)
        assert.deepStrictEqual(yield* storage.list({}), [])
      })
    ))

  it.scopedLive("a database without migration 7 stores no trace context: one warning naming it; traced inserts and claims work as before", () =>
    withoutMigration(
      "0007_traceparent",
      Effect.gen(function*() {
        const storage = yield* Storage
        const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        const [stored] = yield* storage.insert([{ funcname: "v6", runAfter: 0, traceparent }])
        const claimed = yield* storage.claimDue(1, 10, "30 seconds")
        assert.deepStrictEqual(claimed.map((j) => [j.jobid, j.traceparent]), [[stored!.handle.jobid, undefined]])
        assert.strictEqual(yield* storage.complete(claimed), 1)
      }),
      // Tracing on: the insert has a span and a traceparent to store, and must not name the column.
      Tracing.layerEnabled
    ))

  it.scopedLive("a migration that fails is not left recorded (MySQL commits DDL): the next run tries it again", () =>
    Effect.gen(function*() {
      const shard = yield* emptyShard()
      const onShard = <A, E>(body: Effect.Effect<A, E, SqlClient.SqlClient>) => mysqlClient(shard.database, body)
      const broken = {
        ...migrations,
        "0099_broken": Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql.unsafe("ALTER TABLE job ADD COLUMN x NO_SUCH_TYPE")
        )
      }
      const failed = yield* Effect.flip(onShard(Migrate.applyOf(broken)))
      assert.strictEqual(failed._tag, "MigrationFailed")
      assert.include(failed.message, "0099_broken")
      assert.deepStrictEqual(
        yield* recorded(shard.database),
        [
          "1_job_table",
          "2_job_life",
          "3_flow_control",
          "4_leases",
          "5_flow_priority",
          "6_throughput",
          "7_traceparent"
        ],
        "the real migrations ran and stay; the broken one is not recorded"
      )
      const fixed = {
        ...migrations,
        "0099_broken": Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("ALTER TABLE job ADD COLUMN x INT NULL"))
      }
      assert.deepStrictEqual((yield* onShard(Migrate.applyOf(fixed))).applied, ["0099_broken"])
      assert.deepStrictEqual(yield* recorded(shard.database), [
        "1_job_table",
        "2_job_life",
        "3_flow_control",
        "4_leases",
        "5_flow_priority",
        "6_throughput",
        "7_traceparent",
        "99_broken"
      ])
    }))

  it.scopedLive("two migrators at once: one applies, the other waits for it and finds nothing to do", () =>
    Effect.gen(function*() {
      const shard = yield* emptyShard()
      const slow = {
        ...migrations,
        "0099_slow": Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => Effect.zipRight(sql.unsafe("SELECT SLEEP(0.5)"), sql.unsafe("ALTER TABLE job ADD COLUMN y INT NULL"))
        )
      }
      // Each, once it returns, must find the migrations done, not merely recorded.
      const columnY = adminQuery(
        `SELECT COUNT(*) AS n FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'job' AND COLUMN_NAME = 'y'`,
        [
          shard.database
        ]
      ).pipe(Effect.map(([rows]) => JSON.parse(JSON.stringify(rows))[0].n as number))
      const migrator = Effect.zip(mysqlClient(shard.database, Migrate.applyOf(slow)), columnY)
      const results = yield* Effect.all([migrator, migrator], { concurrency: 2 })
      assert.deepStrictEqual(results.map(([r, y]) => [r.applied.length, y]).sort(), [[0, 1], [8, 1]])
      assert.deepStrictEqual(yield* recorded(shard.database), [
        "1_job_table",
        "2_job_life",
        "3_flow_control",
        "4_leases",
        "5_flow_priority",
        "6_throughput",
        "7_traceparent",
        "99_slow"
      ])
    }))

  it.scopedLive("status lists a migration recorded by a newer garivini", () =>
    Effect.gen(function*() {
      const shard = yield* emptyShard()
      yield* Migrate.migrate([shard])
      yield* adminQuery(
        `INSERT INTO \`${shard.database}\`.garivini_migrations (migration_id, name) VALUES (99, 'future')`
      )
      const status = yield* Migrate.statusShard(shard)
      assert.deepStrictEqual(status.migrations.map((m) => [m.label, m.unknown]), [
        ["0001_job_table", false],
        ["0002_job_life", false],
        ["0003_flow_control", false],
        ["0004_leases", false],
        ["0005_flow_priority", false],
        ["0006_throughput", false],
        ["0007_traceparent", false],
        ["0099_future", true]
      ])
      assert.deepStrictEqual((yield* Migrate.migrate([shard]))[0]!.applied, [])
    }))

  it.effect("schema.sql documents migration 1 (the same statements)", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(Migrate.schemaStatements().map(normalized), MYSQL.map(normalized))
      assert.include(
        readFileSync(new URL("../../schema.sql", import.meta.url), "utf8"),
        "CREATE TABLE IF NOT EXISTS job"
      )
    }))
})

/** `body` on a pool of its own to `database` (closed after). */
const mysqlClient = <A, E>(database: string, body: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* openClient(clientConfig(shardConfig(1, database), database), yield* Effect.scope).pipe(
      Effect.orDie
    )
    return yield* Effect.provideService(body, SqlClient.SqlClient, client)
  }))

const sqliteFile = (filename: string) => SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer))

describe("migrations on SQLite", () => {
  it.scopedLive("opening a new file applies migrations 1 and 2; status and migrateSqlite then find them applied", () =>
    Effect.gen(function*() {
      const file = join(yield* tempDir("garivini-mig-"), "jobs.db")
      const missing = yield* Migrate.statusSqlite(file)
      assert.isFalse(missing.exists)
      yield* Effect.scoped(Layer.build(Layer.orDie(layerSqlite({ filename: file }))))
      const status = yield* Migrate.statusSqlite(file)
      assert.deepStrictEqual(status.migrations.map((m) => [m.label, Option.isSome(m.appliedAt)]), [
        ["0001_job_table", true],
        ["0002_job_life", true],
        ["0003_flow_control", true],
        ["0004_leases", true],
        ["0005_flow_priority", true],
        ["0006_throughput", true],
        ["0007_traceparent", true]
      ])
      assert.deepStrictEqual((yield* Migrate.migrateSqlite(file)).applied, [])
    }))

  it.scopedLive("a file made before migrations (the job table, no record) is adopted as migration 1 when opened, then gets migration 2", () =>
    Effect.gen(function*() {
      const file = join(yield* tempDir("garivini-mig-"), "old.db")
      const old = yield* sqliteFile(file)
      for (const statement of SQLITE) yield* old.unsafe(statement)
      yield* old.unsafe("INSERT INTO job (funcname) VALUES ('kept')")
      const schemaBefore = yield* old.unsafe("SELECT sql FROM sqlite_master WHERE tbl_name = 'job' ORDER BY name")
      assert.isTrue((yield* Migrate.statusSqlite(file)).adoptsJobTable)
      yield* Effect.scoped(Layer.build(Layer.orDie(layerSqlite({ filename: file }))))
      // The indexes as they were, and migration 5's beside them; the table with migration 2's columns added.
      const schemaAfter = yield* old.unsafe("SELECT sql FROM sqlite_master WHERE tbl_name = 'job' ORDER BY name")
      const [job, claimIndex, leaseIndex, ...kept] = schemaAfter
      assert.deepStrictEqual(kept, schemaBefore.slice(1))
      assert.deepStrictEqual([claimIndex, leaseIndex], [
        { sql: "CREATE INDEX job_claim ON job (priority DESC, run_after)" },
        { sql: "CREATE INDEX job_lease ON job (funcname, leased_until)" }
      ])
      assert.include(JSON.stringify(job), "priority INTEGER NOT NULL DEFAULT 0")
      assert.include(JSON.stringify(job), "leased_until INTEGER NULL")
      assert.include(JSON.stringify(job), "traceparent TEXT NULL")
      assert.deepStrictEqual(yield* old.unsafe("SELECT migration_id, name FROM garivini_migrations"), [
        { migration_id: 1, name: "job_table" },
        { migration_id: 2, name: "job_life" },
        { migration_id: 3, name: "flow_control" },
        { migration_id: 4, name: "leases" },
        { migration_id: 5, name: "flow_priority" },
        { migration_id: 6, name: "throughput" },
        { migration_id: 7, name: "traceparent" }
      ])
      assert.deepStrictEqual(yield* old.unsafe("SELECT funcname, ended FROM job"), [{ funcname: "kept", ended: null }])
    }))

  it.scopedLive("a foreign job table in the file is refused (JobTableMismatch from migrate; the store does not open) and left alone", () =>
    Effect.gen(function*() {
      const file = join(yield* tempDir("garivini-mig-"), "foreign.db")
      const other = yield* sqliteFile(file)
      yield* other.unsafe("CREATE TABLE job (jobid INTEGER PRIMARY KEY, funcname TEXT)")
      const error = yield* Effect.flip(Migrate.migrateSqlite(file))
      assert.strictEqual(error._tag, "JobTableMismatch")
      assert.include(error.message, "column arg is missing")
      const open = yield* Effect.exit(Effect.scoped(Layer.build(layerSqlite({ filename: file }))))
      assert.isTrue(Exit.isFailure(open))
      assert.include(String(Exit.isFailure(open) ? open.cause : ""), "not Garivini's")
      assert.deepStrictEqual(
        yield* other.unsafe("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"),
        [{ name: "job" }]
      )
    }))
})
