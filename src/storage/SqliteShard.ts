/**
 * A shard in one SQLite file, through `@effect/sql-sqlite-node` (better-sqlite3): the embedded
 * storage of `garivini up`. The driver is an optional dependency, loaded with a dynamic
 * `import()` only when a `sqlite:` target is used.
 *
 * - Durable on disk: WAL journal with `synchronous=NORMAL`. A commit is in the WAL file (the
 *   OS's page cache) before it returns, so a killed process loses nothing it committed; only a
 *   power loss or OS crash may lose the last commits (never corrupting the file). `FULL` also
 *   fsyncs the WAL at every commit, for that case.
 * - One writer: one connection, every operation under one permit (better-sqlite3 is synchronous,
 *   so a statement blocks the event loop while it runs: statements stay short).
 * - Other processes (`garivini jobs`, `consume` in another terminal) share the file: WAL readers
 *   never block the writer, and a writer waits up to `busyTimeoutMs` for another process's write
 *   — not in SQLite's busy handler, which would sleep inside the synchronous driver and freeze
 *   the whole event loop (in `garivini up`: the embedded job server and every role), but by
 *   retrying the operation on an Effect schedule (1 ms doubling to 25 ms, jittered).
 * - Claims are one `BEGIN IMMEDIATE` transaction (the write lock is taken first, so the
 *   transaction cannot fail halfway for a lock another process took meanwhile).
 */
import { closeSync, openSync } from "node:fs"
import * as Reactivity from "@effect/experimental/Reactivity"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import type { SqlClient } from "@effect/sql/SqlClient"
import { SqlClient as SqlClientTag } from "@effect/sql/SqlClient"
import { Cause, Duration, Effect, ExecutionStrategy, Exit, Option, Schedule, Schema, Scope, SynchronizedRef } from "effect"
import { SqliteDriverMissing } from "../errors.js"
import { ARG_MAX_BYTES, bytesView, LenientInt, NEVER } from "../Job.js"
import type { ValidNewJob } from "../Job.js"
import { applyOnSqliteOpen } from "./migrations/migrator.js"
import { ShardLost, ShardRejected, ShardUnreached } from "./ShardBackend.js"
import type { RowInsert, ShardBackend, ShardFailure, ShardListQuery } from "./ShardBackend.js"
import {
  badData,
  claimColumns,
  countsFromRows,
  countsStatement,
  inlineLimit,
  JOB_COLUMNS,
  jobsFromRows,
  listStatement,
  withArgs,
  withinBudget
} from "./sql.js"

/**
 * What is used of the driver module. Declared here rather than taken from its types so that
 * no public declaration of Garivini names the optional package.
 */
export interface SqliteDriver {
  readonly make: (options: { readonly filename: string }) => Effect.Effect<SqlClient, never, Scope.Scope | Reactivity.Reactivity>
}

const DRIVER_PACKAGE = "@effect/sql-sqlite-node"

/**
 * Loads the driver. `importer` is for tests (a module that does not exist); a missing package
 * becomes SqliteDriverMissing naming the command that installs it.
 */
export const loadDriver = (
  importer: () => Promise<SqliteDriver> = () => import("@effect/sql-sqlite-node/SqliteClient")
): Effect.Effect<SqliteDriver, SqliteDriverMissing> =>
  Effect.tryPromise({
    try: importer,
    catch: (e) =>
      new SqliteDriverMissing({
        reason: `${DRIVER_PACKAGE} cannot be loaded (${errorCode(e) ?? String(e).split("\n")[0]})`,
        fix: `install it beside garivini: npm install ${DRIVER_PACKAGE}`
      })
  })

/** The `job` table in SQLite: schema.sql's columns and semantics. */
export const SQLITE_SCHEMA: ReadonlyArray<string> = [
  // AUTOINCREMENT: ids are never reused, even after the newest job is deleted (as InnoDB).
  `CREATE TABLE IF NOT EXISTS job (
    jobid INTEGER PRIMARY KEY AUTOINCREMENT,
    funcname TEXT NOT NULL,
    arg BLOB,
    uniqkey TEXT NULL,
    run_after INTEGER NOT NULL DEFAULT 0,
    \`coalesce\` TEXT NULL,
    flag TEXT DEFAULT 'shim' CHECK (flag IN ('controller', 'shim')),
    failcount INTEGER NOT NULL DEFAULT 0
  )`,
  "CREATE INDEX IF NOT EXISTS job_run_after ON job (run_after)",
  // On the keys without trailing spaces: utf8mb4_bin is PAD SPACE in MySQL, so 'a' and 'a '
  // are one key there, and every layer agrees (uniqueIdentity). NULL keys never collide.
  "CREATE UNIQUE INDEX IF NOT EXISTS job_unique ON job (rtrim(funcname, ' '), rtrim(uniqkey, ' '))"
]

export type Synchronous = "normal" | "full"

export interface SqliteShardOptions {
  /** `normal` (default): a committed job survives a killed process; `full`: also a power loss. */
  readonly synchronous?: Synchronous | undefined
  /** How long a write waits for another process's write lock (default 5 s). */
  readonly busyTimeoutMs?: number | undefined
}

const decodeCode = Schema.decodeUnknownOption(Schema.Struct({ code: Schema.String }))
/** The driver's error: SQLite's result code (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_UNIQUE`...) or Node's. */
const errorCode = (e: unknown): string | undefined => Option.getOrUndefined(Option.map(decodeCode(e), (x) => x.code))

const reasonOf = (error: SqlError): { readonly reason: string; readonly code: string | undefined } => {
  const code = errorCode(error.cause)
  const detail = error.cause instanceof Error ? error.cause.message : String(error.cause)
  return { reason: `${detail}${code === undefined ? "" : ` (${code})`}`, code }
}

/**
 * SQLite's result codes as the three failure kinds: a lock held by another process past the
 * busy timeout, or a closed database, means nothing was applied and a retry may work (unreached);
 * an I/O error may come in the middle of a commit (lost); everything else is a refusal.
 */
const classify = (error: SqlError): ShardFailure => {
  const { code, reason } = reasonOf(error)
  if (code === undefined) {
    return /not open|closed/i.test(reason) ? new ShardUnreached({ reason }) : new ShardRejected({ reason })
  }
  if (/^SQLITE_(BUSY|LOCKED|CANTOPEN)/.test(code)) return new ShardUnreached({ reason })
  if (code.startsWith("SQLITE_IOERR")) return new ShardLost({ reason })
  return new ShardRejected({ reason, code })
}

/** Another process holds the write lock: nothing was applied, the operation can be run again. */
const isBusy = (failure: ShardFailure): boolean => failure._tag === "ShardUnreached" && /\(SQLITE_(BUSY|LOCKED)/.test(failure.reason)

const RunResult = Schema.Struct({
  changes: Schema.Number,
  lastInsertRowid: Schema.Union(Schema.Number, Schema.BigIntFromSelf)
})
const decodeRunResult = Schema.decodeUnknown(RunResult)
const IdRow = Schema.Array(Schema.Struct({ jobid: LenientInt }))
const decodeIdRows = Schema.decodeUnknown(IdRow)
const JournalRow = Schema.Array(Schema.Struct({ journal_mode: Schema.String }))
const decodeJournal = Schema.decodeUnknown(JournalRow)

/** A list of ids as one JSON parameter (`json_each`): one statement shape for any count. */
const idsJson = (ids: ReadonlyArray<number>) => JSON.stringify([...new Set(ids)])

export const make = (
  driver: SqliteDriver,
  dbid: number,
  filename: string,
  options: SqliteShardOptions = {}
): Effect.Effect<ShardBackend, never, Scope.Scope> =>
  Effect.gen(function*() {
    const layerScope = yield* Effect.scope
    const opened = yield* SynchronizedRef.make(Option.none<SqlClient>())
    const permit = yield* Effect.makeSemaphore(1)
    const busySchedule = Schedule.exponential(Duration.millis(1), 2).pipe(
      Schedule.union(Schedule.spaced(Duration.millis(25))),
      Schedule.jittered,
      Schedule.upTo(Duration.millis(Math.max(0, options.busyTimeoutMs ?? 5000)))
    )
    const synchronous = options.synchronous ?? "normal"

    /** Opens the file, sets the connection up and applies the schema (idempotent). */
    const open = Effect.gen(function*() {
      const scope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
      const setUp = Effect.gen(function*() {
        yield* createPrivately(filename)
        // better-sqlite3 throws from its constructor (missing directory, not a database): a defect
        // of the driver's `make`, caught here as "unreached".
        const client = yield* driver.make({ filename }).pipe(
          Effect.provide(Reactivity.layer),
          Scope.extend(scope),
          Effect.catchAllDefect((d) => Effect.fail(openFailure(d)))
        )
        const run = (sql: string) => client.unsafe(sql).pipe(Effect.mapError((e) => openFailure(e.cause)))
        const journal = yield* run("PRAGMA journal_mode").pipe(
          Effect.flatMap((rows) => decodeJournal(rows).pipe(Effect.mapError(badData("journal mode"))))
        )
        const mode = journal[0]?.journal_mode ?? "unknown"
        if (mode !== "wal") yield* Effect.logWarning(`journal mode is ${mode}, not wal: other processes will wait for writes`)
        yield* run(`PRAGMA synchronous = ${synchronous === "full" ? "FULL" : "NORMAL"}`)
        // 0: a locked database answers SQLITE_BUSY at once; `withConnection` waits without blocking.
        yield* run("PRAGMA busy_timeout = 0")
        yield* applyOnSqliteOpen.pipe(Effect.provideService(SqlClientTag, client))
        yield* Effect.logInfo(`opened ${filename}: journal ${mode}, synchronous ${synchronous}`)
        return client
      })
      return yield* setUp.pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
    }).pipe(Effect.annotateLogs({ shard: dbid, sqlite: filename }))

    /** The database, opened on first use (and tried again on later use if that failed). */
    const connected = SynchronizedRef.modifyEffect(opened, (current) =>
      Option.isSome(current)
        ? Effect.succeed([current.value, current] as const)
        : Effect.map(open, (o) => [o, Option.some(o)] as const))

    /**
     * Runs `f` on the one connection, holding the permit: no statement of another fiber can run
     * inside a transaction of this one. Uninterruptible: an interrupted transaction would leave
     * the connection mid-transaction.
     */
    const withConnection = <A>(f: (conn: Connection) => Effect.Effect<A, ShardFailure>) =>
      permit.withPermits(1)(Effect.uninterruptible(Effect.scoped(Effect.gen(function*() {
        const client = yield* connected
        const conn = yield* client.reserve.pipe(Effect.mapError((e) => new ShardUnreached({ reason: reasonOf(e).reason })))
        return yield* f(conn)
      })))).pipe(
        // SQLITE_BUSY comes before anything is applied (a transaction takes the write lock with
        // BEGIN IMMEDIATE, a single statement commits on its own), so the whole operation is
        // run again, the permit released meanwhile so this process's other fibers go on.
        Effect.retry({ while: isBusy, schedule: busySchedule })
      )

    /** `body` in a `BEGIN IMMEDIATE` transaction: the write lock first, so nothing fails halfway for a lock. */
    const inTransaction = <A>(conn: Connection, body: Effect.Effect<A, ShardFailure>) =>
      Effect.gen(function*() {
        yield* conn.executeUnprepared("BEGIN IMMEDIATE", [], undefined).pipe(Effect.mapError(classify))
        const exit = yield* Effect.exit(body)
        if (Exit.isFailure(exit)) {
          yield* conn.executeUnprepared("ROLLBACK", [], undefined).pipe(Effect.ignore)
          return yield* Effect.failCause(exit.cause)
        }
        yield* conn.executeUnprepared("COMMIT", [], undefined).pipe(
          Effect.mapError(classify),
          // A COMMIT that fails is rolled back: make sure the connection is out of the transaction.
          Effect.tapError(() => conn.executeUnprepared("ROLLBACK", [], undefined).pipe(Effect.ignore))
        )
        return exit.value
      })

    const rows = (conn: Connection, sql: string, params: ReadonlyArray<unknown>) =>
      conn.execute(sql, params, undefined).pipe(Effect.mapError(classify), Effect.flatMap((r) => jobsFromRows(dbid, r)))
    const changes = (conn: Connection, sql: string, params: ReadonlyArray<unknown>) =>
      conn.executeRaw(sql, params).pipe(
        Effect.mapError(classify),
        Effect.flatMap((r) => decodeRunResult(r).pipe(Effect.mapError(badData("result")))),
        Effect.map((r) => r.changes)
      )

    const INSERT = "INSERT OR IGNORE INTO job (funcname, uniqkey, `coalesce`, arg, run_after, flag, failcount) VALUES (?,?,?,?,?,?,0)"
    const EXISTING = "SELECT jobid FROM job WHERE rtrim(funcname, ' ') = rtrim(?, ' ') AND rtrim(uniqkey, ' ') = rtrim(?, ' ')"

    /** One prepared single-row INSERT per job (microseconds each in process), all in one transaction. */
    const insertRow = (conn: Connection, row: ValidNewJob) =>
      Effect.gen(function*() {
        const result = yield* conn.executeRaw(INSERT, [row.funcname, row.uniqkey, row.coalesce, bytesView(row.arg), row.runAfter, row.flag]).pipe(
          Effect.mapError(classify),
          Effect.flatMap((r) => decodeRunResult(r).pipe(Effect.mapError(badData("insert result"))))
        )
        if (result.changes === 1) return { _tag: "Inserted", jobid: Number(result.lastInsertRowid) } satisfies RowInsert
        if (row.uniqkey === null) return yield* Effect.fail(new ShardRejected({ reason: "a job without uniqkey was ignored" }))
        // In a batch's transaction the row that collided is still there.
        const existing = yield* conn.execute(EXISTING, [row.funcname, row.uniqkey], undefined).pipe(
          Effect.mapError(classify),
          Effect.flatMap((r) => decodeIdRows(r).pipe(Effect.mapError(badData("rows"))))
        )
        return { _tag: "Duplicate", existing: existing[0]?.jobid ?? null } satisfies RowInsert
      })

    const insert = (input: ReadonlyArray<ValidNewJob>) =>
      withConnection((conn) => {
        const all = Effect.forEach(input, (row) => insertRow(conn, row))
        // One row commits on its own (its duplicate lookup may miss a job deleted meanwhile:
        // Storage inserts it again); several go in one transaction, all or none, one commit.
        return input.length === 1 ? all : inTransaction(conn, all)
      })

    const claimDue = (now: number, limit: number, leaseUntil: number, exclude: ReadonlyArray<string>, maxBytes: number) =>
      withConnection((conn) => {
        const where = `run_after <= ?${exclude.length === 0 ? "" : " AND funcname NOT IN (SELECT value FROM json_each(?))"}`
        const params = exclude.length === 0 ? [now] : [now, JSON.stringify(exclude)]
        const inlineMax = inlineLimit(limit, maxBytes)
        return inTransaction(
          conn,
          Effect.gen(function*() {
            const raw = yield* conn.execute(
              `SELECT ${claimColumns(inlineMax)} FROM job WHERE ${where} ORDER BY run_after, jobid LIMIT ${limit}`,
              params,
              undefined
            ).pipe(Effect.mapError(classify))
            const { fetch, take } = withinBudget(raw, yield* jobsFromRows(dbid, raw), maxBytes, inlineMax)
            if (take.length === 0) return take
            const due = fetch.length === 0 ? take : yield* withArgs(
              take,
              yield* conn.execute("SELECT jobid, arg FROM job WHERE jobid IN (SELECT value FROM json_each(?))", [idsJson(fetch)], undefined).pipe(
                Effect.mapError(classify)
              )
            )
            // One JSON parameter: one statement shape whatever the count (the write lock is ours).
            yield* changes(conn, "UPDATE job SET run_after = ? WHERE jobid IN (SELECT value FROM json_each(?))", [
              leaseUntil,
              idsJson(due.map((j) => j.jobid))
            ])
            return due
          })
        )
      })

    const byIds = (verb: string, ids: ReadonlyArray<number>, head: ReadonlyArray<unknown>) =>
      ids.length === 0
        ? Effect.succeed(0)
        : withConnection((conn) => changes(conn, `${verb} WHERE jobid IN (SELECT value FROM json_each(?))`, [...head, idsJson(ids)]))

    return {
      dbid,
      maxArgBytes: Effect.as(connected, ARG_MAX_BYTES),
      insert,
      claimDue,
      setRunAfter: (ids, runAfter) => byIds("UPDATE job SET run_after = ?", ids, [runAfter]),
      remove: (ids) => byIds("DELETE FROM job", ids, []),
      reschedule: (jobid, runAfter, failcount) =>
        withConnection((conn) => changes(conn, "UPDATE job SET run_after = ?, failcount = ? WHERE jobid = ?", [runAfter, failcount, jobid])).pipe(
          Effect.map((n) => n > 0)
        ),
      retryNever: (funcname, now) =>
        withConnection((conn) => changes(conn, `UPDATE job SET run_after = ? WHERE funcname = ? AND run_after >= ${NEVER}`, [now, funcname])),
      counts: (now) =>
        withConnection((conn) => {
          const { params, sql } = countsStatement(now)
          return conn.execute(sql, params, undefined).pipe(Effect.mapError(classify), Effect.flatMap((r) => countsFromRows(dbid, r)))
        }),
      list: (q: ShardListQuery) => {
        const { params, sql } = listStatement(q)
        return withConnection((conn) => rows(conn, sql, params))
      },
      get: (jobid) =>
        withConnection((conn) => rows(conn, `SELECT ${JOB_COLUMNS} FROM job WHERE jobid = ?`, [jobid])).pipe(
          Effect.map((found) => Option.fromNullable(found[0]))
        )
    }
  })

/**
 * A new database file is created readable by its owner only (0600: job args are private data);
 * SQLite gives its -wal and -shm files the main file's mode. An existing file keeps the mode its
 * owner set. Best effort: if this cannot create the file, the driver's open says why.
 */
const createPrivately = (filename: string) =>
  Effect.sync(() => {
    if (filename === "" || filename === ":memory:") return
    try {
      closeSync(openSync(filename, "wx", 0o600))
    } catch {
      // EEXIST (keep its mode), or an error the driver's open reports in its own words.
    }
  })

/** Why the file could not be opened (a thrown driver error, a defect or a failed pragma). */
const openFailure = (cause: unknown): ShardUnreached => {
  const error = Cause.isCause(cause) ? Cause.squash(cause) : cause
  const message = error instanceof Error ? error.message : String(error)
  const code = errorCode(error)
  return new ShardUnreached({ reason: `cannot open the SQLite file: ${message}${code === undefined ? "" : ` (${code})`}` })
}

/** A missing native module (better-sqlite3 built without its install script) is not a bad file. */
export const isNativeModuleMissing = (failure: ShardFailure): boolean =>
  /bindings file|better_sqlite3\.node|NODE_MODULE_VERSION/i.test(failure.reason)
