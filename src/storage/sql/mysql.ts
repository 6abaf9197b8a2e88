/**
 * The MySQL / MariaDB dialect of the SQL shard: one scoped `@effect/sql-mysql2` pool per shard,
 * opened on first use (a shard that is down at start does not stop the others), with the
 * server's capabilities detected at connect: `FOR UPDATE SKIP LOCKED` (MariaDB ≥ 10.6, MySQL ≥
 * 8.0.1), `INSERT ... RETURNING` (MariaDB ≥ 10.5) and `max_allowed_packet`. Transactions are
 * READ COMMITTED; deadlocks and lock wait timeouts run the operation again.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as MysqlClient from "@effect/sql-mysql2/MysqlClient"
import { Duration, Effect, Option, Predicate, Schedule, Schema, Scope } from "effect"
import * as Defaults from "../../roles/defaults.js"
import type { ShardConfig } from "../targets.js"
import { bytesView, LenientInt, priorityValue, uniqueIdentity } from "../../Job.js"
import type { ValidNewJob } from "../../Job.js"
import { afterCommit, ShardLost, ShardRejected, ShardUnreached } from "../ShardBackend.js"
import type { RowInsert, ShardBackend, ShardFailure } from "../ShardBackend.js"
import { decodeHeader, decodeReturned } from "./rows.js"
import * as SqlShard from "./SqlShard.js"
import type { Dialect, InsertContext } from "./SqlShard.js"

/** How inserts learn the ids of their rows. */
export type InsertMode = "auto" | "returning" | "statements"

export interface MysqlShardOptions {
  /**
   * `returning`: one multi-row `INSERT IGNORE ... RETURNING` (MariaDB ≥ 10.5).
   * `statements`: one single-row INSERT per job, all sent in one round trip (any server).
   * `auto` (default) picks `returning` where the server has it.
   */
  readonly insertMode?: InsertMode | undefined
  /** Force SKIP LOCKED on or off (default: detected). */
  readonly skipLocked?: boolean | undefined
  /** Take the server's `max_allowed_packet` to be this many bytes (default: detected; for tests). */
  readonly maxAllowedPacket?: number | undefined
  /**
   * How long an insert, claim, update or delete by id, or get may wait for the server before its
   * connection is closed and it fails (an insert as outcome-unknown). Default 10 s.
   */
  readonly statementTimeout?: Duration.DurationInput | undefined
}

export interface Capabilities extends SqlShard.Capabilities {
  readonly version: string
  readonly skipLocked: boolean
  readonly returning: boolean
}

/** Rows per INSERT statement: 7 placeholders a row stays far below the 65,535 limit. */
const INSERT_CHUNK_ROWS = 1000
/** Bytes of `arg` per INSERT statement, so a statement stays well inside max_allowed_packet. */
const INSERT_CHUNK_BYTES = 4 * 1024 * 1024
/** Room left in a packet for the statement text and the other columns. */
const PACKET_OVERHEAD = 64 * 1024
/** Keys per duplicate lookup statement: far below the 65,535 placeholders of a prepared statement. */
const LOOKUP_CHUNK_KEYS = 1024
/** Prepared statements kept per connection (LRU; evicted ones are closed on the server). */
const MAX_PREPARED = 256

const MysqlErrorInfo = Schema.Struct({
  code: Schema.optional(Schema.String),
  errno: Schema.optional(Schema.Number),
  sqlState: Schema.optional(Schema.String),
  sqlMessage: Schema.optional(Schema.String),
  fatal: Schema.optional(Schema.Boolean),
  message: Schema.optional(Schema.String)
})
const decodeErrorInfo = Schema.decodeUnknownOption(MysqlErrorInfo)

const describe = (
  error: SqlError
): { readonly reason: string; readonly refused: boolean; readonly code: string | undefined } => {
  const info = decodeErrorInfo(error.cause)
  if (Option.isNone(info)) return { reason: error.message, refused: false, code: undefined }
  const { code, fatal, message, sqlMessage, sqlState } = info.value
  const reason = `${sqlMessage ?? message ?? error.message}${code === undefined ? "" : ` (${code})`}`
  // An error packet from the server (it has a SQLSTATE) on a live connection: not applied.
  return { reason, refused: sqlState !== undefined && fatal !== true, code }
}

const unreached = (error: SqlError) => {
  const { code, reason } = describe(error)
  return new ShardUnreached({ reason, code, cause: error })
}
/** An error answer on a live connection was refused (not applied); anything else lost the outcome. */
export const classify = (error: SqlError): ShardRejected | ShardLost => {
  const { code, reason, refused } = describe(error)
  return refused ? new ShardRejected({ reason, code, cause: error }) : new ShardLost({ reason, code, cause: error })
}

const CapsRow = Schema.Struct({ version: Schema.String, max_packet: LenientInt })
const decodeCaps = Schema.decodeUnknown(Schema.Array(CapsRow))

/** Pads a list to a power of two (repeating the last item) so few statement shapes are prepared. */
const padIds = <A>(ids: ReadonlyArray<A>): ReadonlyArray<A> => {
  let size = 1
  while (size < ids.length) size *= 2
  const padded = [...ids]
  while (padded.length < size) padded.push(ids[ids.length - 1]!)
  return padded
}
const placeholders = (n: number) => Array.from({ length: n }, () => "?").join(",")

const parseVersion = (version: string): { readonly mariadb: boolean; readonly parts: ReadonlyArray<number> } => {
  const mariadb = /mariadb/i.test(version)
  // MariaDB 10.x may report "5.5.5-10.11.19-MariaDB": the real version follows the prefix.
  const cleaned = version.replace(/^5\.5\.5-/, "")
  const parts = (/^(\d+)\.(\d+)\.(\d+)/.exec(cleaned) ?? []).slice(1).map(Number)
  return { mariadb, parts }
}
const atLeast = (parts: ReadonlyArray<number>, min: ReadonlyArray<number>): boolean => {
  for (let i = 0; i < min.length; i++) {
    const a = parts[i] ?? 0
    if (a !== min[i]) return a > min[i]!
  }
  return true
}

export const detectCapabilities = (version: string, maxPacket: number, options: MysqlShardOptions): Capabilities => {
  const { mariadb, parts } = parseVersion(version)
  const skipLocked = options.skipLocked ?? (mariadb ? atLeast(parts, [10, 6]) : atLeast(parts, [8, 0, 1]))
  const returningAvailable = mariadb && atLeast(parts, [10, 5])
  const mode = options.insertMode ?? "auto"
  const packet = options.maxAllowedPacket ?? maxPacket
  return {
    version,
    skipLocked,
    returning: mode === "returning" || (mode === "auto" && returningAvailable),
    // The text protocol of `statements` mode sends blobs as hex: twice their size.
    maxArgBytes: Math.floor((packet - PACKET_OVERHEAD) / (mode === "statements" || !returningAvailable ? 2 : 1))
  }
}

/** Pool options for one shard; `maxIdle` is set so idle connections are kept (see STYLE.md). */
export const clientConfig = (shard: ShardConfig, database: string | undefined): MysqlClient.MysqlClientConfig => {
  const maxConnections = shard.maxConnections ?? 10
  return {
    host: shard.host,
    port: shard.port,
    ...(database === undefined ? {} : { database }),
    username: shard.user,
    password: shard.password,
    maxConnections,
    connectionTTL: Duration.minutes(5),
    poolConfig: {
      maxIdle: maxConnections,
      connectTimeout: Duration.toMillis(Duration.decode(shard.connectTimeout ?? Duration.seconds(5))),
      enableKeepAlive: true,
      maxPreparedStatements: MAX_PREPARED,
      charset: "utf8mb4"
    }
  }
}

/** Opens a pool in `scope`; the pool closes with it. */
export const openClient = (config: MysqlClient.MysqlClientConfig, scope: Scope.Scope) =>
  MysqlClient.make(config).pipe(Effect.provide(Reactivity.layer), Scope.extend(scope))

/**
 * Deadlocks (1213) and lock wait timeouts (1205) roll the transaction (or statement) back: run
 * the operation again, at once (the other transaction has already won; a delay only adds latency).
 */
const isLockConflict = (f: ShardFailure) =>
  f._tag === "ShardRejected" && (f.code === "ER_LOCK_DEADLOCK" || f.code === "ER_LOCK_WAIT_TIMEOUT")

/** The pool, and what the server can do. */
const open = (shard: ShardConfig, options: MysqlShardOptions) => (scope: Scope.Scope) =>
  Effect.gen(function*() {
    const client = yield* openClient(clientConfig(shard, shard.database), scope)
    const row = yield* client.unsafe("SELECT VERSION() AS version, @@max_allowed_packet AS max_packet").pipe(
      Effect.flatMap(decodeCaps)
    )
    const caps = detectCapabilities(row[0]!.version, row[0]!.max_packet, options)
    yield* Effect.logInfo(
      `connected: ${caps.version}, SKIP LOCKED ${caps.skipLocked ? "on" : "off"}, inserts via ${
        caps.returning ? "RETURNING" : "single statements"
      }`
    )
    return { client, caps }
  }).pipe(
    Effect.mapError((e) => e._tag === "SqlError" ? unreached(e) : new ShardUnreached({ reason: String(e), cause: e })),
    Effect.annotateLogs({ shard: shard.id })
  )

/** A list as `(?,?,...)`, padded to a power of two so few statement shapes are prepared. */
const inList = (values: ReadonlyArray<number | string>) => {
  const padded = padIds(values)
  return { sql: `(${placeholders(padded.length)})`, params: padded }
}

/**
 * `(jobid, lease_token) IN ((?,?),...)`, padded like inList (a range on the primary key). One pair
 * is written `jobid = ? AND lease_token = ?`: MariaDB 10.11 plans a DELETE or UPDATE with a
 * one-element row IN as a scan of the whole table (EXPLAIN: type ALL), so every lone completion
 * read every stored row.
 */
const tokenedIn = (jobs: ReadonlyArray<readonly [number, string]>) => {
  if (jobs.length === 1) return { sql: "(jobid = ? AND lease_token = ?)", params: [...jobs[0]!] }
  const padded = padIds(jobs)
  return {
    sql: `(jobid, lease_token) IN (${padded.map(() => "(?,?)").join(",")})`,
    params: padded.flat()
  }
}

const changes = (raw: unknown) => Effect.map(decodeHeader(raw), (h) => h.affectedRows)

const rowParams = (r: ValidNewJob) => [r.funcname, r.uniqkey, r.coalesce, bytesView(r.arg), r.runAfter, r.flag]
const INSERT_HEAD = "INSERT IGNORE INTO job (funcname, uniqkey, `coalesce`, arg, run_after, flag, failcount) VALUES "
const ROW = "(?,?,?,?,?,?,0)"
/**
 * The statement's form for these rows. Extra columns are named only when a row needs them, so the
 * usual statement stays as it was: migration 0005's `priority` when a row is not normal (the
 * column's default), migration 4's `lease_token` and `leased_until` when a row is stored leased
 * (the Injector's), migration 7's `traceparent` when a row carries one (tracing on).
 */
interface InsertForm {
  readonly head: string
  readonly row: string
  readonly params: (r: ValidNewJob) => Array<unknown>
}
const forms = new Map<number, InsertForm>()
const formFor = (priority: boolean, leased: boolean, traced: boolean): InsertForm => {
  const key = (priority ? 1 : 0) + (leased ? 2 : 0) + (traced ? 4 : 0)
  let form = forms.get(key)
  if (form === undefined) {
    const extra = [
      ...(priority ? ["priority"] : []),
      ...(leased ? ["lease_token", "leased_until"] : []),
      ...(traced ? ["traceparent"] : [])
    ]
    form = key === 0 ? { head: INSERT_HEAD, row: ROW, params: rowParams } : {
      head: `INSERT IGNORE INTO job (funcname, uniqkey, \`coalesce\`, arg, run_after, flag, failcount, ${
        extra.join(", ")
      }) VALUES `,
      row: `(?,?,?,?,?,?,0${",?".repeat(extra.length)})`,
      params: (r) => [
        ...rowParams(r),
        ...(priority ? [priorityValue(r.priority)] : []),
        ...(leased ? [r.lease ?? null, r.lease === undefined ? null : r.runAfter] : []),
        ...(traced ? [r.traceparent ?? null] : [])
      ]
    }
    forms.set(key, form)
  }
  return form
}
const formOf = (ctx: InsertContext<Capabilities>, rows: ReadonlyArray<ValidNewJob>) =>
  formFor(
    ctx.priority && rows.some((r) => r.priority !== undefined),
    ctx.leases && rows.some((r) => r.lease !== undefined),
    ctx.traces && rows.some((r) => r.traceparent !== undefined)
  )
const insertedBy = (h: { readonly affectedRows: number; readonly insertId: number }): RowInsert | null =>
  h.affectedRows === 1 ? { _tag: "Inserted", jobid: h.insertId } : null

/** One row: affectedRows and insertId say exactly what happened (cheaper than RETURNING). */
const insertOne = (ctx: InsertContext<Capabilities>, row: ValidNewJob) => {
  const form = formOf(ctx, [row])
  return ctx.conn.executeRaw(`${form.head}${form.row}`, form.params(row)).pipe(
    Effect.mapError(classify),
    Effect.flatMap(decodeHeader),
    Effect.map((h): ReadonlyArray<RowInsert | null> => [insertedBy(h)])
  )
}

/** The statement for `n` rows (built once per size: a batch of concurrent calls has one per call). */
const returningSql = new Map<string, string>()
const returningStatement = (n: number, form: { readonly head: string; readonly row: string }): string => {
  const key = `${n}${form.head}`
  let sql = returningSql.get(key)
  if (sql === undefined) {
    sql = `${form.head}${Array.from({ length: n }, () => form.row).join(",")} RETURNING jobid, funcname, uniqkey`
    returningSql.set(key, sql)
  }
  return sql
}

/** One multi-row INSERT ... RETURNING: ignored rows are absent from what comes back. */
const insertReturning = (ctx: InsertContext<Capabilities>, chunk: ReadonlyArray<ValidNewJob>) => {
  const form = formOf(ctx, chunk)
  return ctx.conn.execute(returningStatement(chunk.length, form), chunk.flatMap(form.params), undefined).pipe(
    Effect.mapError(classify),
    Effect.flatMap(decodeReturned),
    Effect.map((returned) => {
      // Rows come back in insertion order; an input row is inserted iff it is next in line.
      let p = 0
      return chunk.map((row): RowInsert | null => {
        const next = returned[p]
        const same = next !== undefined && next.funcname === row.funcname &&
          (row.uniqkey === null ? next.uniqkey === null : next.uniqkey !== null &&
            uniqueIdentity(next.funcname, next.uniqkey) === uniqueIdentity(row.funcname, row.uniqkey))
        if (!same) return null
        p++
        return { _tag: "Inserted", jobid: next.jobid }
      })
    })
  )
}

/** One single-row INSERT per job, all in one multi-statement round trip. */
const insertStatements = (ctx: InsertContext<Capabilities>, chunk: ReadonlyArray<ValidNewJob>) => {
  const form = formOf(ctx, chunk)
  return ctx.conn.executeUnprepared(
    // The trailing SELECT makes the result a list even for one row.
    `${chunk.map(() => `${form.head}${form.row}`).join(";\n")};\nSELECT 1`,
    chunk.flatMap(form.params),
    undefined
  ).pipe(
    Effect.mapError(classify),
    Effect.flatMap((results) => Effect.forEach(chunk, (_, i) => decodeHeader(results[i]))),
    Effect.map((headers) => headers.map(insertedBy))
  )
}

/**
 * The existing jobs of rows dropped as duplicates: per function, a chunk of keys per statement
 * (`uniqkey IN (...)` is one range scan of the unique index; an OR of pairs is not).
 */
const lookupExisting = (conn: Connection, dropped: ReadonlyArray<ValidNewJob>) =>
  Effect.gen(function*() {
    const keysByFunction = new Map<string, Array<string>>()
    for (const r of dropped) {
      if (r.uniqkey === null) continue
      const keys = keysByFunction.get(r.funcname)
      if (keys === undefined) keysByFunction.set(r.funcname, [r.uniqkey])
      else keys.push(r.uniqkey)
    }
    const existing = new Map<string, number>()
    for (const [funcname, keys] of keysByFunction) {
      for (let i = 0; i < keys.length; i += LOOKUP_CHUNK_KEYS) {
        const chunk = inList(keys.slice(i, i + LOOKUP_CHUNK_KEYS))
        const found = yield* conn.execute(
          `SELECT jobid, funcname, uniqkey FROM job WHERE funcname = ? AND uniqkey IN ${chunk.sql}`,
          [funcname, ...chunk.params],
          undefined
        ).pipe(Effect.mapError(classify), Effect.flatMap(decodeReturned))
        for (const f of found) existing.set(uniqueIdentity(f.funcname, f.uniqkey ?? ""), f.jobid)
      }
    }
    return existing
  })

/** Chunks of at most INSERT_CHUNK_ROWS rows and INSERT_CHUNK_BYTES of args (one row at least). */
const chunksOf = (input: ReadonlyArray<ValidNewJob>): ReadonlyArray<ReadonlyArray<ValidNewJob>> => {
  const chunks: Array<Array<ValidNewJob>> = []
  let current: Array<ValidNewJob> = []
  let bytes = 0
  for (const row of input) {
    if (current.length > 0 && (current.length >= INSERT_CHUNK_ROWS || bytes + row.arg.length > INSERT_CHUNK_BYTES)) {
      chunks.push(current)
      current = []
      bytes = 0
    }
    current.push(row)
    bytes += row.arg.length
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

const insert = (ctx: InsertContext<Capabilities>, input: ReadonlyArray<ValidNewJob>) => {
  const chunks = chunksOf(input)
  const insertChunk = (chunk: ReadonlyArray<ValidNewJob>) =>
    chunk.length === 1
      ? insertOne(ctx, chunk[0]!)
      : ctx.caps.returning
      ? insertReturning(ctx, chunk)
      : insertStatements(ctx, chunk)
  const all = Effect.map(Effect.forEach(chunks, insertChunk), (parts) => parts.flat())
  // Several statements go in one transaction: a failure leaves none applied, and the batch
  // costs one commit (one log flush) instead of one per statement.
  const inserted = input.length === 1 || (chunks.length === 1 && ctx.caps.returning) ? all : ctx.inTransaction(all)
  return Effect.gen(function*() {
    const results = yield* inserted
    const dropped = input.filter((_, i) => results[i] === null)
    const existing = dropped.length === 0 ? new Map<string, number>() : yield* lookupExisting(ctx.conn, dropped).pipe(
      Effect.mapError(afterCommit(results.some((r) => r !== null), "looking up the duplicates' jobs"))
    )
    return input.map((row, i): RowInsert =>
      results[i] ?? {
        _tag: "Duplicate",
        existing: row.uniqkey === null ? null : existing.get(uniqueIdentity(row.funcname, row.uniqkey)) ?? null
      }
    )
  })
}

/**
 * Closes the socket under a reserved connection at once (a stalled peer would hold a graceful
 * end forever): mysql2 fails the pending statement (PROTOCOL_CONNECTION_LOST) and drops the
 * connection from its pool. @effect/sql-mysql2 0.53 keeps the driver's connection in a private
 * `conn` field; mysql-stall.test.ts checks that this still reaches it.
 */
export const abortConnection = (conn: Connection): boolean => {
  const driver: unknown = Predicate.hasProperty(conn, "conn") ? conn.conn : undefined
  if (!Predicate.hasProperty(driver, "stream") || !Predicate.hasProperty(driver.stream, "destroy")) return false
  const destroy = driver.stream.destroy
  if (!Predicate.isFunction(destroy)) return false
  destroy.call(driver.stream)
  return true
}

/** The MySQL / MariaDB dialect for one shard. */
export const dialect = (shard: ShardConfig, options: MysqlShardOptions = {}): Dialect<Capabilities> => ({
  open: open(shard, options),
  classify,
  // READ COMMITTED takes no gap locks: under REPEATABLE READ two claimers locking ranges of the
  // run_after index and then moving rows within it deadlock each other.
  begin: "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; BEGIN",
  inList,
  tokenedIn,
  jobColumns:
    "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'job'",
  lockRows: (caps) => ` FOR UPDATE${caps.skipLocked ? " SKIP LOCKED" : ""}`,
  claimIndex: " FORCE INDEX (job_claim)",
  forUpdate: " FOR UPDATE",
  insertIgnore: "INSERT IGNORE",
  upsertThroughput:
    "INSERT INTO garivini_throughput (minute, slot, completed, failed) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE completed = completed + ?, failed = failed + ?",
  changes,
  insert,
  retry: { while: isLockConflict, schedule: Schedule.recurs(4) },
  statementTimeout: {
    after: Duration.decode(options.statementTimeout ?? Defaults.storage.statementTimeout),
    abort: abortConnection
  }
})

/** A shard in MySQL / MariaDB; its pool closes with the scope. */
export const make = (
  shard: ShardConfig,
  options: MysqlShardOptions = {}
): Effect.Effect<ShardBackend, never, Scope.Scope> => SqlShard.make(shard.id, dialect(shard, options))
