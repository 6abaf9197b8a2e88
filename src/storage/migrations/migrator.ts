/**
 * Applies the migrations of `index.ts` to one database (any dialect, through `SqlClient`) with
 * `@effect/sql`'s Migrator, and reads what was applied. Around the Migrator:
 *
 * - adoption: a `job` table with no migration recorded (Perl Garivini's, or one made before
 *   migrations existed) is checked against the Perl shape first; if it fits, migration 1 records
 *   it without a change, else `JobTableMismatch` and nothing is written;
 * - MySQL runs DDL outside transactions (each statement commits), and the Migrator records a
 *   migration before running it: a migration that fails there stays recorded. Its record is
 *   deleted again, so the next run tries it again;
 * - on MySQL two migrators are serialized by a named lock (`GET_LOCK`), so the second waits for
 *   the first's DDL instead of finding its records and reporting "up to date" too early; on
 *   SQLite the Migrator's transaction covers the DDL, and a migrator that lost the race to
 *   another process fails with `MigrationsLocked` (to be run again).
 */
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect, Option, Record, Ref, Schema } from "effect"
import { MIGRATIONS_TABLE, migrations } from "./index.js"
import { jobTableExists, jobTableProblems, tableExists } from "./jobTable.js"
import { ShardRejected, ShardUnreached } from "../ShardBackend.js"
import type { ShardFailure } from "../ShardBackend.js"

/** A `job` table is there, unrecorded, and is not the Perl shape: it is left as it is. */
export class JobTableMismatch extends Data.TaggedError("JobTableMismatch")<{
  readonly problems: ReadonlyArray<string>
  /** Which database (set by `../migrate.ts`). */
  readonly target?: string
}> {
  override get message(): string {
    return `${where(this.target)}the existing job table is not Garivini's (${
      this.problems.join("; ")
    }); it was left unchanged and no migration ran`
  }
}

/** A migration (or loading the list) failed; on MySQL its record was removed so it runs again. */
export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly migration: string
  readonly cause: unknown
  readonly target?: string
}> {
  override get message(): string {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `${where(this.target)}migration ${this.migration} failed: ${cause}`
  }
}

/** Another process was applying migrations at the same time; running again finds them applied. */
export class MigrationsLocked extends Data.TaggedError("MigrationsLocked")<{
  readonly reason: string
  readonly target?: string
}> {
  override get message(): string {
    return `${where(this.target)}migrations are being applied by another process: ${this.reason}`
  }
}

const where = (target: string | undefined) => target === undefined ? "" : `${target}: `

export type ApplyError = JobTableMismatch | MigrationFailed | MigrationsLocked | SqlError

/** `0001_job_table`: a migration as its module is named. */
export const label = (id: number, name: string): string => `${String(id).padStart(4, "0")}_${name}`

/** Migrations by module name (`0001_job_table`); the number is the id. */
export type MigrationList = Readonly<Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>>>

/** The ids and names of a list, in order. */
const idsOf = (list: MigrationList): ReadonlyArray<{ readonly id: number; readonly name: string }> =>
  Object.keys(list)
    .flatMap((key) => {
      const m = /^(\d+)_(.+)$/.exec(key)
      return m === null ? [] : [{ id: Number(m[1]), name: m[2]! }]
    })
    .sort((a, b) => a.id - b.id)

/** The migrations this version knows, in order. */
export const known = idsOf(migrations)

export interface Applied {
  /** The migrations run now, as `0001_job_table`. */
  readonly applied: ReadonlyArray<string>
  /** Whether an existing `job` table was adopted as migration 1. */
  readonly adopted: boolean
}

export interface MigrationState {
  readonly id: number
  readonly label: string
  /** When it was recorded; none: pending. */
  readonly appliedAt: Option.Option<Date>
  /** Recorded by a newer Garivini: not among this version's migrations. */
  readonly unknown: boolean
}

export interface Status {
  readonly migrations: ReadonlyArray<MigrationState>
  /** No migration recorded yet, but a `job` table is there: migration 1 would adopt it. */
  readonly adoptsJobTable: boolean
}

/** SQLite's CURRENT_TIMESTAMP: `YYYY-MM-DD HH:MM:SS`, in UTC without saying so. */
const SqliteTimestamp = Schema.transform(Schema.String, Schema.DateFromSelf, {
  strict: true,
  decode: (s) => new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s.replace(" ", "T")}Z`),
  encode: (d) => d.toISOString()
})
const Recorded = Schema.Struct({
  migration_id: Schema.Union(Schema.Number, Schema.NumberFromString),
  name: Schema.String,
  created_at: Schema.Union(Schema.DateFromSelf, SqliteTimestamp)
})
const decodeRecorded = Schema.decodeUnknown(Schema.Array(Recorded))

/** What the migrations table records (nothing when it does not exist yet). */
const recorded = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  if (!(yield* tableExists(MIGRATIONS_TABLE))) return []
  const rows = yield* sql`SELECT migration_id, name, created_at FROM ${sql(MIGRATIONS_TABLE)} ORDER BY migration_id`
    .withoutTransform
  // A table of that name that does not decode is not ours: a defect no caller can repair.
  return yield* decodeRecorded(rows).pipe(Effect.orDie)
})

/** What is applied and what is pending, changing nothing. */
export const statusOf = (list: MigrationList): Effect.Effect<Status, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const known = idsOf(list)
    const rows = yield* recorded
    const byId = new Map(rows.map((r) => [r.migration_id, r]))
    const ours = known.map(({ id, name }): MigrationState => ({
      id,
      label: label(id, name),
      appliedAt: Option.map(Option.fromNullable(byId.get(id)), (r) => r.created_at),
      unknown: false
    }))
    const newer = rows
      .filter((r) => !known.some((k) => k.id === r.migration_id))
      .map((r): MigrationState => ({
        id: r.migration_id,
        label: label(r.migration_id, r.name),
        appliedAt: Option.some(r.created_at),
        unknown: true
      }))
    return {
      migrations: [...ours, ...newer].sort((a, b) => a.id - b.id),
      adoptsJobTable: rows.length === 0 && (yield* jobTableExists)
    }
  }).pipe(Effect.withSpan("Migrate.status"))

export const status = statusOf(migrations)

const runMigrator = Migrator.make({})

/** `body` holding a lock named after the database (MySQL); as is elsewhere. */
const serialized = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.onDialectOrElse({
      mysql: () =>
        Effect.scoped(Effect.gen(function*() {
          // A session lock: on a connection of its own, released before it goes back to the pool.
          const conn = yield* sql.reserve
          const name = "LEFT(CONCAT('garivini_migrate:', DATABASE()), 64)"
          const [row] = yield* conn.executeUnprepared(`SELECT GET_LOCK(${name}, 60) AS got`, [], undefined)
          if (Number(row?.got) !== 1)
            return yield* new MigrationsLocked({ reason: "waited 60 s for another migrator's lock" })
          yield* Effect.addFinalizer(() =>
            Effect.ignore(conn.executeUnprepared(`SELECT RELEASE_LOCK(${name})`, [], undefined))
          )
          return yield* body
        })),
      orElse: () => body
    })
  })

/**
 * Applies the migrations of `list` not yet recorded; an unrecorded `job` table is adopted (or
 * refused). Returns what ran. (`list` is a parameter for tests; Garivini's is `migrations`.)
 */
export const applyOf = (list: MigrationList): Effect.Effect<Applied, ApplyError, SqlClient.SqlClient> =>
  serialized(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const known = idsOf(list)
    const before = yield* recorded
    const adopted = before.length === 0 && (yield* jobTableExists)
    if (adopted) {
      const problems = yield* jobTableProblems
      if (problems.length > 0) return yield* new JobTableMismatch({ problems })
    }
    const latest = Math.max(0, ...before.map((r) => r.migration_id))
    const running = yield* Ref.make(Option.none<string>())
    const done = yield* Ref.make(new Set<number>())
    const tracked = Record.map(
      list,
      (migration, key) =>
        Effect.zipRight(Ref.set(running, Option.some(key)), migration).pipe(
          Effect.zipLeft(Ref.update(done, (s) => new Set([...s, Number(/^\d+/.exec(key)?.[0])]))),
          Effect.annotateLogs("migration", key)
        )
    )

    const failed = (cause: unknown) =>
      Effect.gen(function*() {
        // MySQL committed the records with the first DDL statement: remove those of migrations that
        // did not complete (on SQLite the rollback already did).
        const completed = yield* Ref.get(done)
        const undone = known.filter((k) => k.id > latest && !completed.has(k.id)).map((k) => k.id)
        if (undone.length > 0) {
          yield* sql`DELETE FROM ${sql(MIGRATIONS_TABLE)} WHERE ${sql.in("migration_id", undone)}`.pipe(
            Effect.tapError((e) => Effect.logError("could not remove the record of a failed migration", e)),
            Effect.ignore
          )
        }
        const migration = Option.getOrElse(yield* Ref.get(running), () => "(loading)")
        return yield* new MigrationFailed({ migration, cause })
      })

    const ran = yield* runMigrator({ loader: Migrator.fromRecord(tracked), table: MIGRATIONS_TABLE }).pipe(
      // The Migrator turns a failing migration into a defect (MigrationError with the cause).
      Effect.catchAllDefect((defect) =>
        failed(defect instanceof Migrator.MigrationError && defect.cause !== undefined ? defect.cause : defect)
      ),
      Effect.catchTag("MigrationError", (e) => failed(e))
    )
    // The Migrator reports "already running" (another process recorded them first) as nothing to do.
    const after = yield* recorded
    const missing = known.filter((k) => !after.some((r) => r.migration_id === k.id))
    if (missing.length > 0) {
      return yield* new MigrationsLocked({
        reason: `${missing.map((k) => label(k.id, k.name)).join(", ")} not recorded yet`
      })
    }
    const applied = ran.map(([id, name]) => label(id, name))
    if (adopted) yield* Effect.logInfo("adopted the existing job table as migration 1")
    for (const m of applied) yield* Effect.logInfo(`applied migration ${m}`)
    return { applied, adopted }
  })).pipe(Effect.withSpan("Migrate.apply"))

export const apply = applyOf(migrations)

const SqliteCode = Schema.Struct({ code: Schema.String })
const sqliteCode = (e: SqlError): string | undefined =>
  Option.getOrUndefined(Option.map(Schema.decodeUnknownOption(SqliteCode)(e.cause), (c) => c.code))

/**
 * `apply` when a SQLite shard opens its file, as the shard's failure kinds: another process
 * holding the write lock, or migrating at the same moment, is "unreached (SQLITE_BUSY)", which
 * the shard runs again on its busy schedule; anything else is a refusal.
 */
export const applyOnSqliteOpen: Effect.Effect<void, ShardFailure, SqlClient.SqlClient> = apply.pipe(
  Effect.catchTags({
    SqlError: (e) => {
      const code = sqliteCode(e)
      const reason = `migrations: ${e.cause instanceof Error ? e.cause.message : e.message}${
        code === undefined ? "" : ` (${code})`
      }`
      return Effect.fail(
        code !== undefined && /^SQLITE_(BUSY|LOCKED)/.test(code)
          ? new ShardUnreached({ reason })
          : new ShardRejected({ reason })
      )
    },
    MigrationsLocked: (e) => Effect.fail(new ShardUnreached({ reason: `${e.message} (SQLITE_BUSY)` })),
    JobTableMismatch: (e) => Effect.fail(new ShardRejected({ reason: e.message })),
    MigrationFailed: (e) => Effect.fail(new ShardRejected({ reason: e.message }))
  }),
  Effect.asVoid
)
