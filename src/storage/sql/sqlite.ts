/**
 * The SQLite dialect of the SQL shard: a shard in one file, through `@effect/sql-sqlite-node`
 * (better-sqlite3), the embedded storage of `garivini up`. The driver is an optional dependency
 * (installed by default; skipped when its native module cannot be built, or with `--omit=optional`),
 * loaded with a dynamic `import()` only when a `sqlite:` target is used.
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
import type { SqlClient } from "@effect/sql/SqlClient"
import { SqlClient as SqlClientTag } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Duration, Effect, Option, Schedule, Schema, Scope } from "effect"
import { SqliteDriverMissing } from "../../errors.js"
import { ARG_MAX_BYTES, bytesView, LenientInt, priorityValue } from "../../Job.js"
import type { ValidNewJob } from "../../Job.js"
import { ShardLost, ShardRejected, ShardUnreached } from "../ShardBackend.js"
import type { RowInsert, ShardBackend, ShardFailure } from "../ShardBackend.js"
import { applyOnSqliteOpen } from "../migrations/migrator.js"
import { badData, decodeRunResult } from "./rows.js"
import * as SqlShard from "./SqlShard.js"
import type { Dialect, InsertContext } from "./SqlShard.js"

/**
 * What is used of the driver module. Declared here rather than taken from its types so that
 * no public declaration of Garivini names the optional package.
 */
export interface SqliteDriver {
  readonly make: (
    options: { readonly filename: string }
  ) => Effect.Effect<SqlClient, never, Scope.Scope | Reactivity.Reactivity>
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
        fix:
          `run npm install ${DRIVER_PACKAGE}: an optional dependency of garivini, left out when its native module (better-sqlite3) cannot be built; installing it by name shows why`,
        cause: e
      })
  })

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

/**
 * SQLite's result codes as the three failure kinds: a lock held by another process past the
 * busy timeout, or a file that cannot be opened, means nothing was applied and a retry may work
 * (unreached); an I/O error may come in the middle of a commit (lost); everything else, an
 * error of the driver without a code included, is a refusal. (A closed database is never
 * reached: the SQL shard fails calls after its layer closed before they get here.)
 */
export const classify = (error: SqlError): ShardFailure => {
  const code = errorCode(error.cause)
  const detail = error.cause instanceof Error ? error.cause.message : String(error.cause)
  const fields = { reason: `${detail}${code === undefined ? "" : ` (${code})`}`, code, cause: error }
  if (code !== undefined && /^SQLITE_(BUSY|LOCKED|CANTOPEN)/.test(code)) return new ShardUnreached(fields)
  if (code !== undefined && code.startsWith("SQLITE_IOERR")) return new ShardLost(fields)
  return new ShardRejected(fields)
}

/** Another process holds the write lock: nothing was applied, the operation can be run again. */
const isBusy = (failure: ShardFailure): boolean =>
  failure._tag === "ShardUnreached" && failure.code !== undefined && /^SQLITE_(BUSY|LOCKED)/.test(failure.code)

const IdRow = Schema.Array(Schema.Struct({ jobid: LenientInt }))
const decodeIdRows = Schema.decodeUnknown(IdRow)
const JournalRow = Schema.Array(Schema.Struct({ journal_mode: Schema.String }))
const decodeJournal = Schema.decodeUnknown(JournalRow)

/** A list as one JSON parameter read with `json_each`: one statement shape for any count. */
const inList = (values: ReadonlyArray<number | string>) => ({
  sql: "(SELECT value FROM json_each(?))",
  params: [JSON.stringify([...new Set(values)])]
})

/** Per token (a claimed batch shares one), `(lease_token = ? AND jobid IN (…))`, OR'ed. */
const tokenedIn = (jobs: ReadonlyArray<readonly [number, string]>) => {
  const byToken = new Map<string, Array<number>>()
  for (const [jobid, token] of jobs) {
    const ids = byToken.get(token)
    if (ids === undefined) byToken.set(token, [jobid])
    else ids.push(jobid)
  }
  const groups = [...byToken].map(([token, ids]) => {
    const list = inList(ids)
    return { sql: `(lease_token = ? AND jobid IN ${list.sql})`, params: [token, ...list.params] }
  })
  return {
    sql: groups.length === 1 ? groups[0]!.sql : `(${groups.map((g) => g.sql).join(" OR ")})`,
    params: groups.flatMap((g) => g.params)
  }
}

/** Opens the file, sets the connection up and applies the migrations. */
const open = (driver: SqliteDriver, filename: string, synchronous: Synchronous) => (scope: Scope.Scope) =>
  Effect.gen(function*() {
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
    if (mode !== "wal")
      yield* Effect.logWarning(`journal mode is ${mode}, not wal: other processes will wait for writes`)
    yield* run(`PRAGMA synchronous = ${synchronous === "full" ? "FULL" : "NORMAL"}`)
    // 0: a locked database answers SQLITE_BUSY at once; the dialect's retry waits without blocking.
    yield* run("PRAGMA busy_timeout = 0")
    yield* applyOnSqliteOpen.pipe(Effect.provideService(SqlClientTag, client))
    yield* Effect.logInfo(`opened ${filename}: journal ${mode}, synchronous ${synchronous}`)
    return { client, caps: { maxArgBytes: ARG_MAX_BYTES } }
  }).pipe(
    Effect.mapError((e) =>
      e._tag === "ShardUnreached"
        ? e
        : new ShardUnreached({ reason: `cannot open the SQLite file: ${e.reason}`, cause: e })
    ),
    Effect.annotateLogs({ sqlite: filename })
  )

const INSERT =
  "INSERT OR IGNORE INTO job (funcname, uniqkey, `coalesce`, arg, run_after, flag, failcount) VALUES (?,?,?,?,?,?,0)"
/** The statement for a row: migrations 0005's `priority`, 4's lease columns and 7's `traceparent` named only when it needs them. */
const insertStatement = (priority: boolean, leased: boolean, traced: boolean) =>
  !priority && !leased && !traced ?
    INSERT :
    `INSERT OR IGNORE INTO job (funcname, uniqkey, \`coalesce\`, arg, run_after, flag, failcount${
      priority ? ", priority" : ""
    }${leased ? ", lease_token, leased_until" : ""}${traced ? ", traceparent" : ""}) VALUES (?,?,?,?,?,?,0${
      priority ? ",?" : ""
    }${leased ? ",?,?" : ""}${traced ? ",?" : ""})`
const EXISTING =
  "SELECT jobid FROM job WHERE rtrim(funcname, ' ') = rtrim(?, ' ') AND rtrim(uniqkey, ' ') = rtrim(?, ' ')"

/** One prepared single-row INSERT per job (microseconds each in process). */
const insertRow = (ctx: InsertContext<SqlShard.Capabilities>, row: ValidNewJob) =>
  Effect.gen(function*() {
    const params = [row.funcname, row.uniqkey, row.coalesce, bytesView(row.arg), row.runAfter, row.flag]
    // Migration 0005's column named only for a job that is not normal (the column's default).
    const prioritized = ctx.priority && row.priority !== undefined
    const leased = ctx.leases && row.lease !== undefined
    const traced = ctx.traces && row.traceparent !== undefined
    const result = yield* ctx.conn.executeRaw(
      insertStatement(prioritized, leased, traced),
      [
        ...params,
        ...(prioritized ? [priorityValue(row.priority)] : []),
        ...(leased ? [row.lease, row.runAfter] : []),
        ...(traced ? [row.traceparent] : [])
      ]
    ).pipe(
      Effect.mapError(classify),
      Effect.flatMap(decodeRunResult)
    )
    if (result.changes === 1) return { _tag: "Inserted", jobid: Number(result.lastInsertRowid) } satisfies RowInsert
    if (row.uniqkey === null)
      return yield* Effect.fail(new ShardRejected({ reason: "a job without uniqkey was ignored" }))
    // In a batch's transaction the row that collided is still there.
    const existing = yield* ctx.conn.execute(EXISTING, [row.funcname, row.uniqkey], undefined).pipe(
      Effect.mapError(classify),
      Effect.flatMap((r) => decodeIdRows(r).pipe(Effect.mapError(badData("rows"))))
    )
    return { _tag: "Duplicate", existing: existing[0]?.jobid ?? null } satisfies RowInsert
  })

const insert = (ctx: InsertContext<SqlShard.Capabilities>, input: ReadonlyArray<ValidNewJob>) => {
  const all = Effect.forEach(input, (row) => insertRow(ctx, row))
  // One row commits on its own (its duplicate lookup may miss a job deleted meanwhile: Storage
  // inserts it again); several go in one transaction, all or none, one commit.
  return input.length === 1 ? all : ctx.inTransaction(all)
}

/** The SQLite dialect for one file. */
export const dialect = (
  driver: SqliteDriver,
  filename: string,
  options: SqliteShardOptions = {}
): Dialect<SqlShard.Capabilities> => ({
  open: open(driver, filename, options.synchronous ?? "normal"),
  classify,
  // The write lock first: a deferred transaction that reads and then writes can fail with
  // SQLITE_BUSY halfway when another process wrote meanwhile.
  begin: "BEGIN IMMEDIATE",
  inList,
  tokenedIn,
  jobColumns: "SELECT name FROM pragma_table_info('job')",
  lockRows: () => "",
  claimIndex: "",
  forUpdate: "",
  insertIgnore: "INSERT OR IGNORE",
  upsertThroughput:
    "INSERT INTO garivini_throughput (minute, slot, completed, failed) VALUES (?, ?, ?, ?) ON CONFLICT (minute, slot) DO UPDATE SET completed = completed + ?, failed = failed + ?",
  changes: (raw) => Effect.map(decodeRunResult(raw), (r) => r.changes),
  insert,
  // SQLITE_BUSY comes before anything is applied (a transaction takes the write lock with BEGIN
  // IMMEDIATE, a single statement commits on its own), so the whole operation is run again.
  retry: {
    while: isBusy,
    schedule: Schedule.exponential(Duration.millis(1), 2).pipe(
      Schedule.union(Schedule.spaced(Duration.millis(25))),
      Schedule.jittered,
      Schedule.upTo(Duration.millis(Math.max(0, options.busyTimeoutMs ?? 5000)))
    )
  },
  // One connection, one writer: no statement of another fiber runs inside a transaction.
  permits: 1
})

export const make = (
  driver: SqliteDriver,
  dbid: number,
  filename: string,
  options: SqliteShardOptions = {}
): Effect.Effect<ShardBackend, never, Scope.Scope> =>
  Effect.annotateLogs(SqlShard.make(dbid, dialect(driver, filename, options)), { shard: dbid })

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
  return new ShardUnreached({
    reason: `cannot open the SQLite file: ${message}${code === undefined ? "" : ` (${code})`}`,
    code,
    cause: error
  })
}

const BindingsFailure = Schema.Struct({ tries: Schema.Array(Schema.String) })
const isBindingsFailure = Schema.is(BindingsFailure)

/**
 * A missing native module (better-sqlite3 built without its install script) is not a bad file:
 * the `bindings` package's error lists the paths it tried; Node's own says ERR_DLOPEN_FAILED
 * (a module built for another Node version).
 */
export const isNativeModuleMissing = (failure: ShardFailure): boolean =>
  failure.code === "ERR_DLOPEN_FAILED" || isBindingsFailure(failure.cause)
