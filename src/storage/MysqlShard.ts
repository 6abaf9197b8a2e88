/**
 * A shard in MySQL / MariaDB: one scoped `@effect/sql-mysql2` pool, opened on first use (a
 * shard that is down at start does not stop the others), with the server's capabilities
 * detected at connect: `FOR UPDATE SKIP LOCKED` (MariaDB ≥ 10.6, MySQL ≥ 8.0.1),
 * `INSERT ... RETURNING` (MariaDB ≥ 10.5) and `max_allowed_packet`.
 *
 * Every operation runs on a reserved connection so that failures can be told apart: failing
 * to get a connection means nothing reached the server; an error packet means the statement
 * was refused; a broken connection after sending means the outcome is unknown.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as MysqlClient from "@effect/sql-mysql2/MysqlClient"
import { Duration, Effect, ExecutionStrategy, Exit, Option, ParseResult, Schedule, Schema, Scope, SynchronizedRef } from "effect"
import type { ShardConfig } from "../config.js"
import { bytesView, LenientInt, NEVER, uniqueIdentity } from "../Job.js"
import type { ValidNewJob } from "../Job.js"
import { afterCommit, ShardLost, ShardRejected, ShardUnreached } from "./ShardBackend.js"
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
}

interface Capabilities {
  readonly version: string
  readonly skipLocked: boolean
  readonly returning: boolean
  readonly maxArgBytes: number
}

interface Opened {
  readonly client: MysqlClient.MysqlClient
  readonly caps: Capabilities
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

const describe = (error: SqlError): { readonly reason: string; readonly refused: boolean; readonly code?: string } => {
  const info = decodeErrorInfo(error.cause)
  if (Option.isNone(info)) return { reason: error.message, refused: false }
  const { code, fatal, message, sqlMessage, sqlState } = info.value
  const reason = `${sqlMessage ?? message ?? error.message}${code === undefined ? "" : ` (${code})`}`
  // An error packet from the server (it has a SQLSTATE) on a live connection: not applied.
  const refused = sqlState !== undefined && fatal !== true
  return code === undefined ? { reason, refused } : { reason, refused, code }
}

const unreached = (error: SqlError) => new ShardUnreached({ reason: describe(error).reason })
const classify = (error: SqlError): ShardRejected | ShardLost => {
  const d = describe(error)
  return d.refused
    ? new ShardRejected(d.code === undefined ? { reason: d.reason } : { reason: d.reason, code: d.code })
    : new ShardLost({ reason: d.reason })
}

const ResultHeader = Schema.Struct({ affectedRows: Schema.Number, insertId: LenientInt })
const decodeHeaderWithSchema = Schema.decodeUnknown(ResultHeader)
/** mysql2's ResultSetHeader, checked by hand (every statement has one); Schema words odd ones. */
const decodeHeader = (r: unknown): Effect.Effect<typeof ResultHeader.Type, ParseResult.ParseError> => {
  if (typeof r === "object" && r !== null) {
    const { affectedRows, insertId } = r as { readonly affectedRows?: unknown; readonly insertId?: unknown }
    if (typeof affectedRows === "number" && typeof insertId === "number" && Number.isSafeInteger(insertId) && insertId >= 0) {
      return Effect.succeed({ affectedRows, insertId })
    }
  }
  return decodeHeaderWithSchema(r)
}
const ReturnedRow = Schema.Struct({ jobid: LenientInt, funcname: Schema.String, uniqkey: Schema.NullOr(Schema.String) })
type ReturnedRow = typeof ReturnedRow.Type
const decodeReturnedSchema = Schema.decodeUnknown(Schema.Array(ReturnedRow))
const isReturnedRow = (row: unknown): row is ReturnedRow => {
  if (typeof row !== "object" || row === null || !("jobid" in row) || !("funcname" in row) || !("uniqkey" in row)) return false
  const { funcname, jobid, uniqkey } = row
  return typeof jobid === "number" && Number.isSafeInteger(jobid) && jobid >= 0 && typeof funcname === "string" &&
    (uniqkey === null || typeof uniqkey === "string")
}
/**
 * The rows of `RETURNING jobid, funcname, uniqkey` (or the duplicate lookup). The common shape
 * (jobid a number) is checked by hand, a few field tests a row instead of a Schema decode (a
 * tenth of the CPU of a coalesced insert went there); anything else goes through the Schema,
 * which accepts numeric strings and explains what is wrong.
 */
const decodeReturned = (rows: unknown) =>
  Array.isArray(rows) && rows.every(isReturnedRow)
    ? Effect.succeed<ReadonlyArray<ReturnedRow>>(rows)
    : decodeReturnedSchema(rows)
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
 * Runs `body` in a READ COMMITTED transaction on `conn`; a broken COMMIT means the outcome is
 * unknown. READ COMMITTED takes no gap locks: under REPEATABLE READ two claimers locking ranges
 * of the run_after index and then moving rows within it deadlock each other.
 */
const inTransaction = <A>(conn: Connection, body: Effect.Effect<A, ShardFailure>): Effect.Effect<A, ShardFailure> =>
  // Uninterruptible: an interrupted body would return the connection to the pool mid-transaction.
  Effect.uninterruptible(Effect.gen(function*() {
    yield* conn.executeUnprepared("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; BEGIN", [], undefined).pipe(
      Effect.mapError(unreached)
    )
    const exit = yield* Effect.exit(body)
    if (Exit.isFailure(exit)) {
      yield* conn.executeUnprepared("ROLLBACK", [], undefined).pipe(Effect.ignore)
      // A connection lost before COMMIT is rolled back by the server: nothing was applied.
      return yield* Effect.failCause(exit.cause).pipe(
        Effect.mapError((f) =>
          f._tag === "ShardLost" ? new ShardUnreached({ reason: `${f.reason}; rolled back before commit` }) : f
        )
      )
    }
    yield* conn.executeUnprepared("COMMIT", [], undefined).pipe(
      Effect.mapError((e) => {
        const failure = classify(e)
        return failure._tag === "ShardRejected" ? failure : new ShardLost({ reason: `COMMIT: ${failure.reason}` })
      })
    )
    return exit.value
  }))

/**
 * Deadlocks (1213) and lock wait timeouts (1205) abort the transaction: run it again, at once
 * (the other transaction has already won; a delay would only add latency).
 */
const retryLockConflicts = Schedule.recurs(4)
const isLockConflict = (f: ShardFailure) =>
  f._tag === "ShardRejected" && (f.code === "ER_LOCK_DEADLOCK" || f.code === "ER_LOCK_WAIT_TIMEOUT")

export const make = (
  shard: ShardConfig,
  options: MysqlShardOptions = {}
): Effect.Effect<ShardBackend, never, Scope.Scope> =>
  Effect.gen(function*() {
    const dbid = shard.id
    const layerScope = yield* Effect.scope
    const opened = yield* SynchronizedRef.make(Option.none<Opened>())

    const open = Effect.gen(function*() {
      const scope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
      const client = yield* openClient(clientConfig(shard, shard.database), scope).pipe(
        Effect.onError(() => Scope.close(scope, Exit.void))
      )
      const row = yield* client.unsafe("SELECT VERSION() AS version, @@max_allowed_packet AS max_packet").pipe(
        Effect.flatMap(decodeCaps),
        Effect.onError(() => Scope.close(scope, Exit.void))
      )
      const caps = detectCapabilities(row[0]!.version, row[0]!.max_packet, options)
      yield* Effect.logInfo(
        `connected: ${caps.version}, SKIP LOCKED ${caps.skipLocked ? "on" : "off"}, inserts via ${
          caps.returning ? "RETURNING" : "single statements"
        }`
      )
      return { client, caps }
    }).pipe(
      Effect.mapError((e) => e._tag === "SqlError" ? unreached(e) : new ShardUnreached({ reason: String(e) })),
      Effect.annotateLogs({ shard: dbid })
    )

    /** Once open, the pool is read without going through the lock (the hot path of inserts). */
    let ready: Opened | undefined
    /** The pool, opened on first use (and retried on later use if that failed). */
    const connected: Effect.Effect<Opened, ShardUnreached> = Effect.suspend(() =>
      ready !== undefined
        ? Effect.succeed(ready)
        : SynchronizedRef.modifyEffect(opened, (current) =>
          Option.isSome(current)
            ? Effect.succeed([current.value, current] as const)
            : Effect.map(open, (o) => {
              ready = o
              return [o, Option.some(o)] as const
            }))
    )

    const withConnection = <A>(f: (conn: Connection, caps: Capabilities) => Effect.Effect<A, ShardFailure>) =>
      Effect.scoped(Effect.gen(function*() {
        const { caps, client } = yield* connected
        const conn = yield* client.reserve.pipe(Effect.mapError(unreached))
        return yield* f(conn, caps)
      }))

    const rows = (conn: Connection, sql: string, params: ReadonlyArray<unknown>) =>
      conn.execute(sql, params, undefined).pipe(
        Effect.mapError(classify),
        Effect.flatMap((r) => jobsFromRows(dbid, r))
      )
    const affected = (conn: Connection, sql: string, params: ReadonlyArray<unknown>) =>
      conn.executeRaw(sql, params).pipe(
        Effect.mapError(classify),
        Effect.flatMap((r) => decodeHeader(r).pipe(Effect.mapError(badData("result")))),
        Effect.map((h) => h.affectedRows)
      )

    const rowParams = (r: ValidNewJob) => [r.funcname, r.uniqkey, r.coalesce, bytesView(r.arg), r.runAfter, r.flag]
    const INSERT_HEAD = "INSERT IGNORE INTO job (funcname, uniqkey, `coalesce`, arg, run_after, flag, failcount) VALUES "
    const ROW = "(?,?,?,?,?,?,0)"

    /** One row: affectedRows and insertId say exactly what happened (cheaper than RETURNING). */
    const insertOne = (conn: Connection, row: ValidNewJob) =>
      conn.executeRaw(`${INSERT_HEAD}${ROW}`, rowParams(row)).pipe(
        Effect.mapError(classify),
        Effect.flatMap((r) => decodeHeader(r).pipe(Effect.mapError(badData("insert result")))),
        Effect.map((h): ReadonlyArray<RowInsert | null> => [h.affectedRows === 1 ? { _tag: "Inserted", jobid: h.insertId } : null])
      )

    /** The statement for `n` rows (built once per size: a batch of concurrent calls has one per call). */
    const returningSql = new Map<number, string>()
    const returningStatement = (n: number): string => {
      let sql = returningSql.get(n)
      if (sql === undefined) {
        sql = `${INSERT_HEAD}${Array.from({ length: n }, () => ROW).join(",")} RETURNING jobid, funcname, uniqkey`
        returningSql.set(n, sql)
      }
      return sql
    }

    /** One multi-row INSERT ... RETURNING: ignored rows are absent from what comes back. */
    const insertReturning = (conn: Connection, chunk: ReadonlyArray<ValidNewJob>) =>
      conn.execute(
        returningStatement(chunk.length),
        chunk.flatMap(rowParams),
        undefined
      ).pipe(
        Effect.mapError(classify),
        Effect.flatMap((r) => decodeReturned(r).pipe(Effect.mapError(badData("RETURNING rows")))),
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

    /** One single-row INSERT per job, all in one multi-statement round trip. */
    const insertStatements = (conn: Connection, chunk: ReadonlyArray<ValidNewJob>) =>
      conn.executeUnprepared(
        // The trailing SELECT makes the result a list even for one row.
        `${chunk.map(() => `${INSERT_HEAD}${ROW}`).join(";\n")};\nSELECT 1`,
        chunk.flatMap(rowParams),
        undefined
      ).pipe(
        Effect.mapError(classify),
        Effect.flatMap((results) =>
          Effect.forEach(chunk, (_, i) => decodeHeader(results[i]).pipe(Effect.mapError(badData("insert result"))))
        ),
        Effect.map((headers) =>
          headers.map((h): RowInsert | null => h.affectedRows === 1 ? { _tag: "Inserted", jobid: h.insertId } : null)
        )
      )

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
            const chunk = padIds(keys.slice(i, i + LOOKUP_CHUNK_KEYS))
            const found = yield* conn.execute(
              `SELECT jobid, funcname, uniqkey FROM job WHERE funcname = ? AND uniqkey IN (${placeholders(chunk.length)})`,
              [funcname, ...chunk],
              undefined
            ).pipe(
              Effect.mapError(classify),
              Effect.flatMap((r) => decodeReturned(r).pipe(Effect.mapError(badData("rows"))))
            )
            for (const f of found) existing.set(uniqueIdentity(f.funcname, f.uniqkey ?? ""), f.jobid)
          }
        }
        return existing
      })

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

    const insert = (input: ReadonlyArray<ValidNewJob>) =>
      withConnection((conn, caps) => {
        const chunks = chunksOf(input)
        const insertChunk = (chunk: ReadonlyArray<ValidNewJob>) =>
          chunk.length === 1
            ? insertOne(conn, chunk[0]!)
            : caps.returning
            ? insertReturning(conn, chunk)
            : insertStatements(conn, chunk)
        const all = Effect.map(Effect.forEach(chunks, insertChunk), (parts) => parts.flat())
        // Several statements go in one transaction: a failure leaves none applied, and the
        // batch costs one commit (one log flush) instead of one per statement.
        const inserted = input.length === 1 || (chunks.length === 1 && caps.returning) ? all : inTransaction(conn, all)
        return Effect.gen(function*() {
          const results = yield* inserted
          const dropped = input.filter((_, i) => results[i] === null)
          const existing = yield* lookupExisting(conn, dropped).pipe(
            Effect.mapError(afterCommit(results.some((r) => r !== null), "looking up the duplicates' jobs"))
          )
          return input.map((row, i): RowInsert =>
            results[i] ?? {
              _tag: "Duplicate",
              existing: row.uniqkey === null ? null : existing.get(uniqueIdentity(row.funcname, row.uniqkey)) ?? null
            }
          )
        })
      })

    const claimDue = (now: number, limit: number, leaseUntil: number, exclude: ReadonlyArray<string>, maxBytes: number) =>
      withConnection((conn, caps) =>
        inTransaction(
          conn,
          Effect.gen(function*() {
            const inlineMax = inlineLimit(limit, maxBytes)
            const raw = yield* conn.execute(
              // LIMIT is inlined (validated integer): `LIMIT ?` fails on some MySQL 8 versions.
              `SELECT ${claimColumns(inlineMax)} FROM job WHERE run_after <= ?${
                exclude.length === 0 ? "" : ` AND funcname NOT IN (${placeholders(exclude.length)})`
              } ORDER BY run_after, jobid LIMIT ${limit} FOR UPDATE${caps.skipLocked ? " SKIP LOCKED" : ""}`,
              [now, ...exclude],
              undefined
            ).pipe(Effect.mapError(classify))
            // Rows past the byte budget stay as they were (locked only until COMMIT).
            const { fetch, take } = withinBudget(raw, yield* jobsFromRows(dbid, raw), maxBytes, inlineMax)
            let due = take
            if (fetch.length > 0) {
              const ids = padIds(fetch)
              const args = yield* conn.execute(`SELECT jobid, arg FROM job WHERE jobid IN (${placeholders(ids.length)})`, ids, undefined).pipe(
                Effect.mapError(classify)
              )
              due = yield* withArgs(take, args)
            }
            if (due.length > 0) {
              const ids = padIds(due.map((j) => j.jobid))
              yield* affected(conn, `UPDATE job SET run_after = ? WHERE jobid IN (${placeholders(ids.length)})`, [
                leaseUntil,
                ...ids
              ])
            }
            return due
          })
        ).pipe(Effect.retry({ schedule: retryLockConflicts, while: isLockConflict }))
      )

    const byIds = (verb: string, ids: ReadonlyArray<number>, head: ReadonlyArray<unknown>) => {
      if (ids.length === 0) return Effect.succeed(0)
      const padded = padIds(ids)
      return withConnection((conn) => affected(conn, `${verb} WHERE jobid IN (${placeholders(padded.length)})`, [...head, ...padded]))
    }

    const counts = (now: number) =>
      withConnection((conn) => {
        const { params, sql } = countsStatement(now)
        return conn.execute(sql, params, undefined).pipe(
          Effect.mapError(classify),
          Effect.flatMap((r) => countsFromRows(dbid, r))
        )
      })

    const list = (q: ShardListQuery) => {
      const { params, sql } = listStatement(q)
      return withConnection((conn) => rows(conn, sql, params))
    }

    return {
      dbid,
      maxArgBytes: Effect.map(connected, (o) => o.caps.maxArgBytes),
      insert,
      claimDue,
      setRunAfter: (ids, runAfter) => byIds("UPDATE job SET run_after = ?", ids, [runAfter]),
      remove: (ids) => byIds("DELETE FROM job", ids, []),
      reschedule: (jobid, runAfter, failcount) =>
        withConnection((conn) =>
          affected(conn, "UPDATE job SET run_after = ?, failcount = ? WHERE jobid = ?", [runAfter, failcount, jobid])
        ).pipe(Effect.map((n) => n > 0)),
      retryNever: (funcname, now) =>
        withConnection((conn) =>
          affected(conn, `UPDATE job SET run_after = ? WHERE funcname = ? AND run_after >= ${NEVER}`, [now, funcname])
        ),
      counts,
      list,
      get: (jobid) =>
        withConnection((conn) => rows(conn, `SELECT ${JOB_COLUMNS} FROM job WHERE jobid = ?`, [jobid])).pipe(
          Effect.map((found) => Option.fromNullable(found[0]))
        )
    }
  })
