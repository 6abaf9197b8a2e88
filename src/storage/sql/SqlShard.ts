/**
 * One shard in a SQL database, over `@effect/sql`: the parts MySQL/MariaDB and SQLite share are
 * written once here (opening on first use, a reserved connection per operation, transactions,
 * the byte-bounded claim, updates by id, reschedule, retry, counts, list, get); what differs
 * is a `Dialect` record (mysql.ts, sqlite.ts).
 *
 * Every operation runs on a reserved connection so that failures can be told apart: failing to
 * get one means nothing reached the server; an error answer means the statement was refused; a
 * broken connection after sending means the outcome is unknown.
 */
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlClient } from "@effect/sql/SqlClient"
import { SqlClient as SqlClientTag } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Schedule } from "effect"
import { Duration, Effect, ExecutionStrategy, Exit, Option, Runtime, Schema, Scope, SynchronizedRef } from "effect"
import { FAILCOUNT_MAX, LenientInt, NEVER, NO_LIFE } from "../../Job.js"
import type { ValidNewJob } from "../../Job.js"
import { JOB_LIFE_COLUMNS } from "../migrations/0002_job_life.js"
import { LEASE_COLUMNS } from "../migrations/0004_leases.js"
import { THROUGHPUT_TABLE } from "../migrations/0006_throughput.js"
import { TRACEPARENT_COLUMN } from "../migrations/0007_traceparent.js"
import { tableExists } from "../migrations/jobTable.js"
import { HELD_BY_HEARTBEAT } from "../leases.js"
import { ShardLost, ShardRejected, ShardUnreached } from "../ShardBackend.js"
import type {
  FailOutcome,
  HeartbeatResult,
  HeldRow,
  RescheduleOutcome,
  RowInsert,
  ShardBackend,
  ShardCancelOutcome,
  ShardFailure,
  ShardListQuery
} from "../ShardBackend.js"
import * as Flow from "./flow.js"
import { badData, decodeClaimLeases, jobsFromRows } from "./rows.js"
import {
  claimColumns,
  countsFromRows,
  countsStatement,
  inlineLimit,
  inspectedColumns,
  JOB_COLUMNS,
  listStatement,
  stateCondition,
  withArgs,
  withPriority,
  withinBudget,
  withLife,
  withTraceparent
} from "./statements.js"
import * as Watchdog from "./watchdog.js"

/**
 * The priorities a claim takes (what Garivini writes, and Perl's default 0): point ranges of the
 * `job_claim` index, each bounded by `run_after <= now`, so no future row is read.
 */
const PRIORITY_RANGES = "priority IN (1, 0, -1)"

/** A row not cancelled (NULL-safe: a live row's `ended` is NULL). */
const NOT_CANCELLED = "COALESCE(ended, '') <> 'cancelled'"

/** A claim keeps the row's token while nobody started the job (no heartbeat seen). */
const KEEPS_TOKEN = "lease_token IS NOT NULL AND heartbeat_at IS NULL"

/** What a statement that ends a lease adds (a table with migration 4): its token and heartbeat go. */
const LEASE_OVER = ", lease_token = NULL, heartbeat_at = NULL"

const LeaseRow = Schema.Struct({
  jobid: LenientInt,
  lease_token: Schema.NullOr(Schema.String),
  ended: Schema.NullOr(Schema.Literal("dead", "cancelled"))
})
const decodeLeaseRows = Schema.decodeUnknown(Schema.Array(LeaseRow))

/**
 * Why a fenced statement did not change a job's row: gone, or cancelled, or dead (`missing`: the
 * job is over), or held under another token now (`fenced`).
 */
const leaseVerdict = (job: HeldRow, row: typeof LeaseRow.Type | undefined): "missing" | "fenced" =>
  row === undefined || row.ended !== null ? "missing" : row.lease_token === job.lease ? "missing" : "fenced"

/** Which of the jobs a heartbeat did not extend, and why: cancelled under their token, or lost. */
const heartbeatVerdicts = (
  jobs: ReadonlyArray<HeldRow>,
  rows: ReadonlyMap<number, typeof LeaseRow.Type>,
  extended: number
): HeartbeatResult => {
  const cancelled: Array<number> = []
  const lost: Array<number> = []
  for (const job of jobs) {
    const row = rows.get(job.jobid)
    if (row !== undefined && row.lease_token === job.lease && row.ended === null) continue
    if (row !== undefined && row.lease_token === job.lease && row.ended === "cancelled") cancelled.push(job.jobid)
    else lost.push(job.jobid)
  }
  return { extended, cancelled, lost }
}

/** What every dialect learns when it opens: at least the largest arg one statement can carry. */
export interface Capabilities {
  readonly maxArgBytes: number
}

/** A list of values in a statement: the SQL after `IN` and its parameters. */
export interface InList {
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
}

/** What an insert strategy is given: the connection, the capabilities and the shared transaction. */
export interface InsertContext<C extends Capabilities> {
  readonly conn: Connection
  readonly caps: C
  /** The table has migration 0005's `priority` column (without it, priorities are not stored). */
  readonly priority: boolean
  readonly dbid: number
  readonly classify: (error: SqlError) => ShardFailure
  readonly inTransaction: <A>(body: Effect.Effect<A, ShardFailure>) => Effect.Effect<A, ShardFailure>
  /** The table has migration 4's columns: a row with a `lease` is stored leased under it. */
  readonly leases: boolean
  /** The table has migration 7's `traceparent`: a row with one stores it. */
  readonly traces: boolean
}

/** What differs between SQL databases. */
export interface Dialect<C extends Capabilities> {
  /** Opens the client in `scope` (closed by the caller on failure) and detects what the server can do. */
  readonly open: (scope: Scope.Scope) => Effect.Effect<{ readonly client: SqlClient; readonly caps: C }, ShardUnreached>
  /** A driver error as one of the three failure kinds (by error codes, never by message text). */
  readonly classify: (error: SqlError) => ShardFailure
  /** The statement(s) opening a transaction (isolation level, write lock). */
  readonly begin: string
  /** `IN (...)` for a list (ids, function names). */
  readonly inList: (values: ReadonlyArray<number | string>) => InList
  /**
   * The rows among `jobs` each still under its lease token, as one condition whose text depends
   * on the count alone (MySQL prepares each distinct statement text).
   */
  readonly tokenedIn: (jobs: ReadonlyArray<readonly [jobid: number, token: string]>) => InList
  /** A query listing the `job` table's column names (as `name`): migration 2's are looked for at open. */
  readonly jobColumns: string
  /** What the claim's SELECT adds to lock its rows (`FOR UPDATE SKIP LOCKED`; nothing in SQLite). */
  readonly lockRows: (caps: C) => string
  /**
   * What the claim names after `FROM job` on a table with priorities: MySQL's ` FORCE INDEX
   * (job_claim)`, so that a small table is not sorted instead (a sort reads, and locks, every due
   * row, not only those the LIMIT takes); nothing in SQLite.
   */
  readonly claimIndex: string
  /** What a SELECT adds to lock its row until COMMIT, waiting for it (` FOR UPDATE`; nothing in SQLite). */
  readonly forUpdate: string
  /** `INSERT IGNORE` (MySQL) or `INSERT OR IGNORE` (SQLite). */
  readonly insertIgnore: string
  /** Adds to one (minute, slot) row of `garivini_throughput`: minute, slot, completed, failed, completed, failed. */
  readonly upsertThroughput: string
  /** Rows matched by an UPDATE or DELETE, from the driver's raw result. */
  readonly changes: (raw: unknown) => Effect.Effect<number, ShardFailure>
  /** Inserts rows (INSERT IGNORE semantics, one result per row, in order). */
  readonly insert: (
    ctx: InsertContext<C>,
    rows: ReadonlyArray<ValidNewJob>
  ) => Effect.Effect<ReadonlyArray<RowInsert>, ShardFailure>
  /** Failures after which the whole operation is run again (nothing was applied), and how. */
  readonly retry: {
    readonly while: (failure: ShardFailure) => boolean
    readonly schedule: Schedule.Schedule<unknown, ShardFailure>
  }
  /** At most this many operations at once (SQLite: one writer, so no statement interleaves a transaction). */
  readonly permits?: number | undefined
  /**
   * A bound on the short operations (insert, claim, updates and deletes by id, get): after
   * `after`, `abort` closes the connection under the operation, so its pending statement fails
   * (the outcome unknown) and the connection never goes back to the pool. Absent: no bound
   * (SQLite has no network to stall).
   */
  readonly statementTimeout?: {
    readonly after: Duration.Duration
    /** False when it could not reach the driver's connection. */
    readonly abort: (conn: Connection) => boolean
  } | undefined
}

export const make = <C extends Capabilities>(
  dbid: number,
  dialect: Dialect<C>
): Effect.Effect<ShardBackend, never, Scope.Scope> =>
  Effect.gen(function*() {
    const layerScope = yield* Effect.scope
    const opened = yield* SynchronizedRef.make(Option.none<Opened<C>>())
    const permit = dialect.permits === undefined ? undefined : yield* Effect.makeSemaphore(dialect.permits)
    /** Once open, the client is read without going through the lock (the hot path of inserts). */
    let ready: Opened<C> | undefined
    /** Set when the layer closes: later calls fail as unreached instead of reaching a closed client. */
    let closed = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (closed = true, ready = undefined)))

    const open = Effect.gen(function*() {
      const scope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
      return yield* dialect.open(scope).pipe(
        Effect.flatMap(({ caps, client }) =>
          Effect.map(
            Effect.all([detectColumns(dialect, client), detectThroughput(dialect, client)]),
            ([{ leases, life, priority, traces }, throughput]) => ({
              client,
              caps,
              life,
              leases,
              priority,
              traces,
              throughput
            })
          )
        ),
        Effect.onError(() => Scope.close(scope, Exit.void))
      )
    })

    /** The client, opened on first use (and tried again on later use if that failed). */
    const connected = Effect.suspend(() =>
      closed
        ? Effect.fail(new ShardUnreached({ reason: "the storage layer is closed" }))
        : ready !== undefined
        ? Effect.succeed(ready)
        : SynchronizedRef.modifyEffect(opened, (current) =>
          Option.isSome(current)
            ? Effect.succeed([current.value, current] as const)
            : Effect.map(open, (o) => {
              ready = o
              return [o, Option.some(o)] as const
            }))
    )

    const guard = dialect.statementTimeout
    const runtime = yield* Effect.runtime<never>()
    const watchdog = guard === undefined ? undefined : Watchdog.make<Connection>(
      Duration.toMillis(guard.after),
      (watch) => {
        const after = Duration.format(guard.after)
        Runtime.runFork(runtime)(
          (guard.abort(watch.subject)
            ? Effect.logWarning(`no answer within ${after} (statement timeout): connection closed`)
            : Effect.logError(`statement timeout (${after}): the driver's connection could not be closed`))
            .pipe(Effect.annotateLogs({ shard: dbid }))
        )
      }
    )
    /**
     * Runs `f` on a reserved connection; failures that applied nothing run it again
     * (dialect.retry). A `bounded` operation's connection is closed when it outlasts the
     * dialect's statement timeout. Waiting for a connection is not bounded here: a bounded
     * operation holds its connection at most that long and a new one has its connect timeout
     * (only the unbounded counts, list and retryNever could hold the whole pool).
     */
    const withConnection = <A>(
      f: (
        conn: Connection,
        caps: C,
        life: boolean,
        leases: boolean,
        priority: boolean,
        traces: boolean
      ) => Effect.Effect<A, ShardFailure>,
      bounded = true
    ): Effect.Effect<A, ShardFailure> => {
      const once = Effect.scoped(Effect.gen(function*() {
        const { caps, client, leases, life, priority, traces } = yield* connected
        const conn = yield* client.reserve.pipe(
          Effect.mapError((e) => new ShardUnreached({ reason: dialect.classify(e).reason, cause: e }))
        )
        if (!bounded || guard === undefined || watchdog === undefined)
          return yield* f(conn, caps, life, leases, priority, traces)
        // A watchdog rather than Effect.timeout: transactions are uninterruptible, and an
        // interrupted statement would return its connection to the pool with the statement
        // still pending. Closing the connection makes that statement fail, so `f` ends.
        const watch = watchdog.arm(conn)
        return yield* f(conn, caps, life, leases, priority, traces).pipe(
          Effect.mapError((failure) => watch.expired ? timedOut(guard.after, failure) : failure),
          Effect.ensuring(Effect.sync(() => watchdog.disarm(watch)))
        )
      }))
      // The permit is released between attempts, so the process's other fibers go on meanwhile.
      const attempt = permit === undefined ? once : permit.withPermits(1)(once)
      // The schedule starts only once an attempt failed in a way worth retrying: a retry
      // wrapped around every operation cost more than the rest of its Effect steps.
      return Effect.catchIf(attempt, dialect.retry.while, () => Effect.retry(attempt, dialect.retry))
    }

    /**
     * `body` in a transaction, rolled back on failure. Uninterruptible: an interrupted body would
     * leave the connection mid-transaction. Nothing is applied before COMMIT, so a failure there
     * (the connection lost included: the server rolls back) is "unreached" unless refused.
     */
    const inTransaction =
      (conn: Connection) => <A>(body: Effect.Effect<A, ShardFailure>): Effect.Effect<A, ShardFailure> =>
        Effect.uninterruptible(Effect.gen(function*() {
          yield* conn.executeUnprepared(dialect.begin, [], undefined).pipe(
            Effect.mapError((e) => notApplied(dialect.classify(e)))
          )
          const exit = yield* Effect.exit(body)
          if (Exit.isFailure(exit)) {
            yield* conn.executeUnprepared("ROLLBACK", [], undefined).pipe(Effect.ignore)
            return yield* Effect.failCause(exit.cause).pipe(Effect.mapError(notApplied))
          }
          yield* conn.executeUnprepared("COMMIT", [], undefined).pipe(
            Effect.mapError((e) => {
              const failure = dialect.classify(e)
              return failure._tag === "ShardLost"
                ? new ShardLost({ reason: `COMMIT: ${failure.reason}`, cause: e })
                : failure
            }),
            // A COMMIT that fails is rolled back: make sure the connection is out of the transaction.
            Effect.tapError(() => conn.executeUnprepared("ROLLBACK", [], undefined).pipe(Effect.ignore))
          )
          return exit.value
        }))

    const classified = <A>(effect: Effect.Effect<A, SqlError>) => Effect.mapError(effect, dialect.classify)
    /** Jobs with their life columns (those of a v1 table: none). */
    const records = (conn: Connection, sql: string, params: ReadonlyArray<unknown>, life: boolean) =>
      Effect.flatMap(
        classified(conn.execute(sql, params, undefined)),
        (r) =>
          Effect.flatMap(
            jobsFromRows(dbid, r),
            (jobs) => life ? withLife(jobs, r) : Effect.succeed(jobs.map((job) => ({ ...job, ...NO_LIFE })))
          )
      )
    const changes = (conn: Connection, sql: string, params: ReadonlyArray<unknown>) =>
      Effect.flatMap(classified(conn.executeRaw(sql, params)), dialect.changes)

    const insert = (input: ReadonlyArray<ValidNewJob>) =>
      withConnection((conn, caps, life, leases, priority, traces) =>
        dialect.insert({
          conn,
          caps,
          priority,
          dbid,
          classify: dialect.classify,
          inTransaction: inTransaction(conn),
          leases: life && leases,
          traces
        }, input)
      )

    /** The claim's statements, inside the caller's transaction (claimDue, claimCapped). */
    const claimIn = (
      conn: Connection,
      caps: C,
      life: boolean,
      leases: boolean,
      priority: boolean,
      traces: boolean,
      now: number,
      limit: number,
      leaseUntil: number,
      token: string,
      exclude: ReadonlyArray<string>,
      maxBytes: number,
      only: string | undefined
    ) =>
      Effect.gen(function*() {
        const inlineMax = inlineLimit(limit, maxBytes)
        const excluded = exclude.length === 0 ? undefined : dialect.inList(exclude)
        const params: Array<unknown> = [now]
        if (excluded !== undefined)
          params.push(...excluded.params)
        if (only !== undefined)
          params.push(only)
        const raw = yield* classified(conn.execute(
          // LIMIT is inlined (validated integer): `LIMIT ?` fails on some MySQL 8 versions.
          // With priorities (migration 0005), higher first: three ranges of the `job_claim
          // (priority DESC, run_after)` index, read in its order up to LIMIT, no sort.
          `SELECT ${claimColumns(inlineMax)}${leases ? ", lease_token, heartbeat_at" : ""}${
            traces ? ", traceparent" : ""
          }${
            priority ? `, priority FROM job${dialect.claimIndex} WHERE ${PRIORITY_RANGES} AND` : " FROM job WHERE"
          } run_after <= ?${excluded === undefined ? "" : ` AND funcname NOT IN ${excluded.sql}`}${
            only === undefined ? "" : " AND funcname = ?"
          } ORDER BY ${priority ? "priority DESC, " : ""}run_after, jobid LIMIT ${limit}${dialect.lockRows(caps)}`,
          params,
          undefined
        ))
        // Rows past the byte budget stay as they were (locked only until COMMIT).
        const decoded = yield* jobsFromRows(dbid, raw)
        const prioritized = priority ? withPriority(decoded, raw) : decoded
        const { fetch, take } = withinBudget(
          raw,
          traces ? withTraceparent(prioritized, raw) : prioritized,
          maxBytes,
          inlineMax
        )
        if (take.length === 0)
          return take
        let due = take
        if (fetch.length > 0) {
          const ids = dialect.inList(fetch)
          due = yield* withArgs(
            take,
            yield* classified(
              conn.execute(`SELECT jobid, arg FROM job WHERE jobid IN ${ids.sql}`, ids.params, undefined)
            )
          )
        }
        const ids = dialect.inList(due.map((j) => j.jobid))
        if (leases) {
          // The token too, in the same UPDATE: the row's own while nobody started the job
          // (no heartbeat: a copy gearmand still holds carries it), else this claim's.
          const held = yield* decodeClaimLeases(raw)
          yield* changes(
            conn,
            `UPDATE job SET run_after = ?, leased_until = ?, lease_token = CASE WHEN ${KEEPS_TOKEN} THEN lease_token ELSE ? END, heartbeat_at = NULL WHERE jobid IN ${ids.sql}`,
            [leaseUntil, leaseUntil, token, ...ids.params]
          )
          return due.map((job, i) => {
            const row = held[i]!
            return { ...job, lease: row.lease_token !== null && row.heartbeat_at === null ? row.lease_token : token }
          })
        }
        // The lease is recorded in the same UPDATE (a v2 table): the job shows as dispatched.
        yield* changes(
          conn,
          life
            ? `UPDATE job SET run_after = ?, leased_until = ? WHERE jobid IN ${ids.sql}`
            : `UPDATE job SET run_after = ? WHERE jobid IN ${ids.sql}`,
          life ? [leaseUntil, leaseUntil, ...ids.params] : [leaseUntil, ...ids.params]
        )
        return due
      })

    const claimDue: ShardBackend["claimDue"] = (now, limit, leaseUntil, token, exclude, maxBytes, only) =>
      withConnection((conn, caps, life, leases, priority, traces) =>
        inTransaction(conn)(
          claimIn(conn, caps, life, leases, priority, traces, now, limit, leaseUntil, token, exclude, maxBytes, only)
        )
      )

    /** The function's leased rows (dispatched or running), through the `job_lease` index of migration 0005. */
    const leasedOn = (conn: Connection, funcname: string, now: number) =>
      Effect.flatMap(
        classified(conn.execute(
          `SELECT COUNT(*) AS n FROM job WHERE funcname = ? AND leased_until > ? AND ${
            stateCondition("dispatched", true).sql
          }`,
          [funcname, now, now],
          undefined
        )),
        (rows) =>
          Effect.mapBoth(decodeCount(rows), { onFailure: badData("leased count"), onSuccess: (r) => r[0]?.n ?? 0 })
      )

    /** Locks the function's control row until COMMIT (MySQL; SQLite's BEGIN IMMEDIATE locks it all). */
    const lockFunction = (conn: Connection, funcname: string) =>
      classified(conn.execute(`SELECT funcname FROM garivini_function WHERE funcname = ?${dialect.forUpdate}`, [
        funcname
      ], undefined))

    const noPriority = (dbid: number) =>
      new ShardRejected({
        reason:
          `shard ${dbid} lacks migration 0005_flow_priority: concurrency limits are off there; run \`garivini migrate\``
      })

    const claimCapped: ShardBackend["claimCapped"] = (
      now,
      funcname,
      cap,
      limit,
      leaseUntil,
      token,
      maxBytes,
      elsewhere
    ) =>
      withConnection((conn, caps, life, leases, priority, traces) =>
        !life || !priority ? Effect.fail(noPriority(dbid)) : inTransaction(conn)(Effect.gen(function*() {
          yield* lockFunction(conn, funcname)
          const here = yield* leasedOn(conn, funcname, now)
          const room = Math.min(limit, cap - here - (yield* elsewhere))
          if (room <= 0) return []
          return yield* claimIn(
            conn,
            caps,
            life,
            leases,
            priority,
            traces,
            now,
            room,
            leaseUntil,
            token,
            [],
            maxBytes,
            funcname
          )
        }))
      )

    const withFunctionLock: ShardBackend["withFunctionLock"] = (funcname, now, body) =>
      withConnection((conn, _caps, life, _leases, priority) =>
        !life || !priority ? Effect.fail(noPriority(dbid)) : inTransaction(conn)(Effect.gen(function*() {
          yield* lockFunction(conn, funcname)
          return yield* body(yield* leasedOn(conn, funcname, now))
        }))
      )

    const byIds = (
      verb: (life: boolean, leases: boolean) => string,
      jobids: ReadonlyArray<number>,
      head: ReadonlyArray<unknown>
    ) => {
      if (jobids.length === 0) return Effect.succeed(0)
      const ids = dialect.inList(jobids)
      return withConnection((conn, _caps, life, leases) =>
        changes(conn, `${verb(life, leases)} WHERE jobid IN ${ids.sql}`, [...head, ...ids.params])
      )
    }

    /**
     * The rows of `jobs`, each fenced by its token when it has one (and the table has the
     * column): `jobid IN (…)` for those without, OR'ed with the dialect's condition for the
     * tokened ones: one condition, so a batch stays one statement.
     */
    const heldCondition = (jobs: ReadonlyArray<HeldRow>, leases: boolean): InList => {
      const plain: Array<number> = []
      const tokened: Array<readonly [number, string]> = []
      for (const j of jobs) {
        if (!leases || j.lease === undefined) plain.push(j.jobid)
        else tokened.push([j.jobid, j.lease])
      }
      const parts: Array<InList> = []
      if (plain.length > 0) {
        const ids = dialect.inList(plain)
        parts.push({ sql: `jobid IN ${ids.sql}`, params: ids.params })
      }
      if (tokened.length > 0) parts.push(dialect.tokenedIn(tokened))
      return parts.length === 1
        ? parts[0]!
        : { sql: `(${parts.map((p) => p.sql).join(" OR ")})`, params: parts.flatMap((p) => p.params) }
    }

    /**
     * One UPDATE recording a failure (and the end of the attempts when it is the last). Only on a
     * job not cancelled: a late failure must not revive a cancelled one.
     */
    const fail: ShardBackend["fail"] = (job, r) =>
      withConnection((conn, _caps, life, leases) => {
        const jobid = job.jobid
        if (!life) {
          // A v1 table: the failure backs the job off, as before migration 2.
          return changes(conn, "UPDATE job SET run_after = ?, failcount = ? WHERE jobid = ?", [
            r.runAfter,
            r.failcount,
            jobid
          ]).pipe(Effect.map((n): FailOutcome => n === 0 ? "missing" : "retrying"))
        }
        const error = r.error === undefined ? "" : ", last_error = ?, last_error_at = ?, last_error_attempt = ?"
        const fenced = leases && job.lease !== undefined
        return changes(
          conn,
          `UPDATE job SET run_after = ?, failcount = ?, leased_until = NULL, ended = ?, ended_at = ?${error}${
            leases ? LEASE_OVER : ""
          } WHERE jobid = ? AND ${NOT_CANCELLED}${fenced ? " AND lease_token = ?" : ""}`,
          [
            r.dead ? NEVER : r.runAfter,
            r.failcount,
            r.dead ? "dead" : null,
            r.dead ? r.at : null,
            ...(r.error === undefined ? [] : [r.error, r.at, r.failcount]),
            jobid,
            ...(fenced ? [job.lease] : [])
          ]
        ).pipe(Effect.flatMap((n): Effect.Effect<FailOutcome, ShardFailure> =>
          n > 0
            ? Effect.succeed(r.dead ? "dead" : "retrying")
            : fenced
            ? Effect.map(whyUnchanged(conn, job), (why) => why === "fenced" ? "fenced" : "missing")
            : Effect.succeed("missing")
        ))
      })

    /** The lease columns of rows (only read when a fenced statement changed fewer rows than named). */
    const leaseRows = (conn: Connection, jobids: ReadonlyArray<number>) => {
      const ids = dialect.inList(jobids)
      return classified(
        conn.execute(`SELECT jobid, lease_token, ended FROM job WHERE jobid IN ${ids.sql}`, ids.params, undefined)
      ).pipe(
        Effect.flatMap((rows) => Effect.mapError(decodeLeaseRows(rows), badData("lease rows"))),
        Effect.map((rows) => new Map(rows.map((row) => [row.jobid, row] as const)))
      )
    }
    /** Why a fenced statement left a row alone: it is gone or cancelled (`missing`), or its token moved on. */
    const whyUnchanged = (conn: Connection, job: HeldRow) =>
      Effect.map(leaseRows(conn, [job.jobid]), (rows) => leaseVerdict(job, rows.get(job.jobid)))

    /**
     * One UPDATE cancels a live job; only when it matched nothing does a read say why (no row, or
     * it had ended): that read changes nothing, so it needs no transaction.
     */
    const cancel: ShardBackend["cancel"] = (jobid, at) =>
      withConnection((conn, _caps, life): Effect.Effect<ShardCancelOutcome, ShardFailure> => {
        if (!life) return Effect.succeed("unsupported")
        return Effect.flatMap(
          changes(
            conn,
            `UPDATE job SET ended = 'cancelled', ended_at = ?, run_after = ${NEVER}, leased_until = NULL WHERE jobid = ? AND ended IS NULL`,
            [at, jobid]
          ),
          (n) =>
            n > 0
              ? Effect.succeed("cancelled" as const)
              : classified(conn.execute("SELECT ended FROM job WHERE jobid = ?", [jobid], undefined)).pipe(
                Effect.flatMap((rows) => Effect.mapError(decodeEndedRows(rows), badData("ended"))),
                Effect.map((rows): ShardCancelOutcome => {
                  const row = rows[0]
                  if (row === undefined) return "missing"
                  return row.ended === "dead" ? "dead" : "already-cancelled"
                })
              )
        )
      })

    const flow = Flow.make({
      withConnection: (f, bounded) =>
        withConnection((conn, _caps, _life, _leases, priority) => f(conn, priority), bounded),
      inTransaction,
      classify: dialect.classify,
      changes: dialect.changes,
      forUpdate: dialect.forUpdate,
      insertIgnore: dialect.insertIgnore
    })

    return {
      dbid,
      flow,
      flowPriority: Effect.map(connected, (o) => o.priority),
      leased: (funcname, now) =>
        withConnection((conn, _caps, life, _leases, priority) =>
          life && priority ? leasedOn(conn, funcname, now) : Effect.fail(noPriority(dbid))
        ),
      claimCapped,
      withFunctionLock,
      maxArgBytes: Effect.map(connected, (o) => o.caps.maxArgBytes),
      jobLife: Effect.map(connected, (o) => o.life),
      leases: Effect.map(connected, (o) => o.leases),
      insert,
      claimDue,
      setRunAfter: (jobids, runAfter, error) =>
        error === undefined
          ? byIds(
            (life, leases) =>
              life
                ? `UPDATE job SET run_after = ?, leased_until = NULL${leases ? LEASE_OVER : ""}`
                : "UPDATE job SET run_after = ?",
            jobids,
            [runAfter]
          )
          : withConnection((conn, _caps, life, leases) => {
            if (jobids.length === 0) return Effect.succeed(0)
            const ids = dialect.inList(jobids)
            return life
              ? changes(
                conn,
                `UPDATE job SET run_after = ?, leased_until = NULL${
                  leases ? LEASE_OVER : ""
                }, last_error = ?, last_error_at = ?, last_error_attempt = CASE WHEN failcount < ${FAILCOUNT_MAX} THEN failcount + 1 ELSE ${FAILCOUNT_MAX} END WHERE jobid IN ${ids.sql}`,
                [runAfter, error.text, error.at, ...ids.params]
              )
              : changes(conn, `UPDATE job SET run_after = ? WHERE jobid IN ${ids.sql}`, [runAfter, ...ids.params])
          }),
      recordThroughput: (minute, slot, completed, failed) =>
        Effect.flatMap(connected, (o) =>
          o.throughput
            ? withConnection((conn) =>
              classified(
                conn.executeRaw(dialect.upsertThroughput, [minute, slot, completed, failed, completed, failed])
              )
            ).pipe(Effect.asVoid)
            : Effect.void),
      throughput: (sinceMinute, pruneBefore) =>
        Effect.flatMap(connected, (o) =>
          o.throughput
            ? withConnection((conn) =>
              Effect.gen(function*() {
                if (pruneBefore !== undefined) {
                  yield* classified(conn.executeRaw(`DELETE FROM ${THROUGHPUT_TABLE} WHERE minute < ?`, [pruneBefore]))
                }
                const rows = yield* classified(conn.execute(
                  `SELECT minute, SUM(completed) AS completed, SUM(failed) AS failed FROM ${THROUGHPUT_TABLE} WHERE minute >= ? GROUP BY minute ORDER BY minute`,
                  [sinceMinute],
                  undefined
                ))
                return Option.some(yield* decodeMinuteRows(rows).pipe(Effect.mapError(badData("throughput rows"))))
              })
            )
            : Effect.succeed(Option.none())),
      onLeases: (leases, lo, hi) =>
        withConnection((conn) =>
          Effect.gen(function*() {
            if (leases.length === 0) return []
            const ours = dialect.inList(leases)
            const rows = yield* classified(conn.execute(
              `SELECT jobid, run_after FROM job WHERE run_after IN ${ours.sql} AND jobid BETWEEN ? AND ?`,
              [...ours.params, lo, hi],
              undefined
            ))
            return yield* Effect.mapError(decodeLeasedRows(rows), badData("leased rows"))
          })
        ),
      extendLeases: (jobids, leases, leaseUntil) =>
        withConnection((conn, _caps, life) =>
          Effect.gen(function*() {
            if (jobids.length === 0) return []
            const ids = dialect.inList(jobids)
            const ours = dialect.inList(leases)
            const changed = yield* changes(
              conn,
              `UPDATE job SET run_after = ?${
                life ? ", leased_until = ?" : ""
              } WHERE jobid IN ${ids.sql} AND run_after IN ${ours.sql}`,
              [leaseUntil, ...(life ? [leaseUntil] : []), ...ids.params, ...ours.params]
            )
            if (changed === jobids.length) return jobids
            // Some are done with (or MySQL counted a row already at leaseUntil as unchanged): which hold?
            const held = yield* classified(
              conn.execute(`SELECT jobid FROM job WHERE jobid IN ${ids.sql} AND run_after = ?`, [
                ...ids.params,
                leaseUntil
              ], undefined)
            )
            return yield* decodeJobids(held)
          })
        ),
      releaseLeases: (jobids, leases, now, cutoff) =>
        withConnection((conn, _caps, life, leased) => {
          if (jobids.length === 0) return Effect.succeed(0)
          const ids = dialect.inList(jobids)
          const ours = dialect.inList(leases)
          // A v1 table has no leased_until; one without migration 4 no heartbeat. The token stays:
          // gearmand may still hold a copy (a connection cut, not a crash), and the next claim keeps
          // a row's token while no heartbeat was seen, so that copy's run is not fenced.
          const set = `run_after = ?${life ? ", leased_until = NULL" : ""}`
          return changes(
            conn,
            `UPDATE job SET ${set} WHERE jobid IN ${ids.sql} AND run_after IN ${ours.sql}${
              leased ? ` AND NOT (${HELD_BY_HEARTBEAT})` : ""
            }`,
            [now, ...ids.params, ...ours.params, ...(leased ? [cutoff] : [])]
          )
        }),
      // Still one statement per batch; a Perl worker's plain DELETE by jobid deletes a cancelled row too.
      remove: (jobs, liveOnly) =>
        jobs.length === 0
          ? Effect.succeed({ deleted: 0, fenced: [] })
          : withConnection((conn, _caps, life, leases) =>
            Effect.gen(function*() {
              const held = heldCondition(jobs, leases)
              const deleted = yield* changes(
                conn,
                `DELETE FROM job WHERE ${held.sql}${life && liveOnly ? ` AND ${NOT_CANCELLED}` : ""}`,
                held.params
              )
              const tokened = leases ? jobs.filter((j) => j.lease !== undefined) : []
              if (tokened.length === 0 || deleted >= new Set(jobs.map((j) => j.jobid)).size)
                return { deleted, fenced: [] }
              const rows = yield* leaseRows(conn, tokened.map((j) => j.jobid))
              return {
                deleted,
                fenced: tokened.filter((j) => leaseVerdict(j, rows.get(j.jobid)) === "fenced").map((j) => j.jobid)
              }
            })
          ),
      reschedule: (job, runAfter, failcount) =>
        withConnection((conn, _caps, life, leases) => {
          const fenced = leases && job.lease !== undefined
          return changes(
            conn,
            // Not a cancelled job: moving its run_after off `never` would let a claimer take it.
            `UPDATE job SET run_after = ?, failcount = ?${life ? ", leased_until = NULL" : ""}${
              leases ? LEASE_OVER : ""
            } WHERE jobid = ?${life ? ` AND ${NOT_CANCELLED}` : ""}${fenced ? " AND lease_token = ?" : ""}`,
            fenced ? [runAfter, failcount, job.jobid, job.lease] : [runAfter, failcount, job.jobid]
          ).pipe(Effect.flatMap((n): Effect.Effect<RescheduleOutcome, ShardFailure> =>
            n > 0
              ? Effect.succeed("rescheduled")
              : fenced
              ? whyUnchanged(conn, job)
              : Effect.succeed("missing")
          ))
        }),
      heartbeat: (jobs, now, leaseUntil) =>
        withConnection((conn, _caps, life, leases): Effect.Effect<HeartbeatResult, ShardFailure> => {
          const tokened = jobs.filter((j) => j.lease !== undefined)
          if (!life || !leases || tokened.length === 0) return Effect.succeed({ extended: 0, cancelled: [], lost: [] })
          const held = heldCondition(tokened, true)
          return Effect.gen(function*() {
            const extended = yield* changes(
              conn,
              `UPDATE job SET heartbeat_at = ?, run_after = ?, leased_until = ? WHERE ended IS NULL AND ${held.sql}`,
              [now, leaseUntil, leaseUntil, ...held.params]
            )
            if (extended >= new Set(tokened.map((j) => j.jobid)).size) return { extended, cancelled: [], lost: [] }
            const rows = yield* leaseRows(conn, tokened.map((j) => j.jobid))
            return heartbeatVerdicts(tokened, rows, extended)
          })
        }),
      fail,
      cancel,
      // Unbounded: these scan a function's or the whole table's rows, and an operator runs them.
      retryNever: (funcname, now) =>
        withConnection(
          (conn, _caps, life) =>
            changes(
              conn,
              // The dead are `never` too, but not for this: `jobs retry --dead` makes them due.
              `UPDATE job SET run_after = ?${
                life ? ", leased_until = NULL" : ""
              } WHERE funcname = ? AND run_after >= ${NEVER}${life ? " AND ended IS NULL" : ""}`,
              [now, funcname]
            ),
          false
        ),
      retryDead: (target, now) =>
        withConnection((conn, _caps, life) => {
          if (!life) return Effect.succeed(0)
          const where: Array<string> = ["ended = 'dead'"]
          const params: Array<unknown> = [now]
          if (target.jobid !== undefined) {
            where.push("jobid = ?")
            params.push(target.jobid)
          }
          if (target.funcname !== undefined) {
            where.push("funcname = ?")
            params.push(target.funcname)
          }
          return changes(
            conn,
            `UPDATE job SET run_after = ?, failcount = 0, ended = NULL, ended_at = NULL, leased_until = NULL WHERE ${
              where.join(" AND ")
            }`,
            params
          )
        }, false),
      purgeEnded: (ended, before, funcname) =>
        withConnection((conn, _caps, life) =>
          life
            ? changes(
              conn,
              `DELETE FROM job WHERE ended = ? AND ended_at < ?${funcname === undefined ? "" : " AND funcname = ?"}`,
              funcname === undefined ? [ended, before] : [ended, before, funcname]
            )
            : Effect.succeed(0), false),
      counts: (now) =>
        withConnection((conn, _caps, life, leases) => {
          const { params, sql } = countsStatement(now, life, leases)
          return Effect.flatMap(classified(conn.execute(sql, params, undefined)), (r) => countsFromRows(dbid, r))
        }, false),
      list: (q: ShardListQuery) =>
        withConnection((conn, _caps, life, leases) => {
          const { params, sql } = listStatement(q, life, leases)
          return records(conn, sql, params, life)
        }, false),
      get: (jobid) =>
        withConnection((conn, _caps, life, leases) =>
          records(
            conn,
            `SELECT ${JOB_COLUMNS}${inspectedColumns(life, leases)} FROM job WHERE jobid = ?`,
            [jobid],
            life
          )
        ).pipe(
          Effect.map((found) => Option.fromNullable(found[0]))
        )
    }
  })

const JobidRows = Schema.Array(Schema.Struct({ jobid: LenientInt }))
const decodeLeasedRows = Schema.decodeUnknown(
  Schema.Array(
    Schema.transform(
      Schema.Struct({ jobid: LenientInt, run_after: LenientInt }),
      Schema.Struct({ jobid: Schema.Number, runAfter: Schema.Number }),
      {
        strict: true,
        decode: (r) => ({ jobid: r.jobid, runAfter: r.run_after }),
        encode: (r) => ({ jobid: r.jobid, run_after: r.runAfter })
      }
    )
  )
)
/** `SELECT jobid …` rows as jobids. */
const decodeJobids = (rows: unknown) =>
  Effect.mapError(Schema.decodeUnknown(JobidRows)(rows), badData("jobid")).pipe(
    Effect.map((r) => r.map((row) => row.jobid))
  )

const decodeEndedRows = Schema.decodeUnknown(
  Schema.Array(Schema.Struct({ ended: Schema.NullOr(Schema.Literal("dead", "cancelled")) }))
)

/** What a shard holds once open: the client, the dialect's capabilities, and which migrations' columns. */
interface Opened<C> {
  readonly client: SqlClient
  readonly caps: C
  /** Migration 2's columns (job life). */
  readonly life: boolean
  /** Whether migration 0006's `garivini_throughput` is there. */
  readonly throughput: boolean
  /** Migration 0005's columns (job priority, function concurrency). */
  readonly priority: boolean
  /** Migration 4's columns (lease tokens, heartbeats); only counted with `life`. */
  readonly leases: boolean
  /** Migration 7's `traceparent` (a job's trace context). */
  readonly traces: boolean
}

const decodeMinuteRows = Schema.decodeUnknown(
  Schema.Array(Schema.Struct({ minute: LenientInt, completed: LenientInt, failed: LenientInt }))
)

/**
 * Whether migration 0006's table is there, asked once at open. Without it, completions and
 * failures are not counted per minute (the console's chart is off), with one log line saying so.
 */
const detectThroughput = <C extends Capabilities>(dialect: Dialect<C>, client: SqlClient) =>
  Effect.gen(function*() {
    const exists = yield* tableExists(THROUGHPUT_TABLE).pipe(
      Effect.provideService(SqlClientTag, client),
      Effect.mapError((e) => new ShardUnreached({ reason: dialect.classify(e).reason, cause: e }))
    )
    if (!exists) {
      yield* Effect.logInfo(
        `no ${THROUGHPUT_TABLE} table (migration 0006_throughput): jobs completed and failed per minute are not counted (the web console's chart is off). Run \`garivini migrate\` to turn it on`
      )
    }
    return exists
  })

const ColumnNames = Schema.Array(Schema.Struct({ name: Schema.String }))
// COUNT(*) is a BIGINT: a string when the driver returns big numbers as strings.
const decodeCount = Schema.decodeUnknown(
  Schema.Array(Schema.Struct({ n: Schema.Union(Schema.Number, Schema.NumberFromString) }))
)
/** Migration 0005's column of `job`, looked for at open. */
const PRIORITY_COLUMN = "priority"

/**
 * Which later migrations' columns the `job` table has, asked once at open: migration 2's
 * (`life`), 4's (`leases`) and 5's `priority` (with it, `garivini_function.concurrency`). A table
 * without migration 2's (a Perl database not migrated) keeps working as before, with one warning
 * saying what is off; one without 4's runs unfenced and without heartbeats, one without 5's
 * without priorities and concurrency limits, each with one warning. No table yet: assumed
 * migrated (its statements fail until `garivini migrate` makes it).
 */
const detectColumns = <C extends Capabilities>(dialect: Dialect<C>, client: SqlClient) =>
  Effect.gen(function*() {
    const rows = yield* client.unsafe(dialect.jobColumns).pipe(
      Effect.mapError((e) => new ShardUnreached({ reason: dialect.classify(e).reason, cause: e }))
    )
    const names = new Set(
      (yield* Schema.decodeUnknown(ColumnNames)(rows).pipe(Effect.mapError(badData("job columns")))).map((r) =>
        r.name.toLowerCase()
      )
    )
    if (names.size === 0) return { life: true, leases: true, priority: true, traces: true }
    const missing = JOB_LIFE_COLUMNS.filter((c) => !names.has(c))
    const missingLeases = LEASE_COLUMNS.filter((c) => !names.has(c))
    if (missing.length > 0) {
      yield* Effect.logWarning(
        `the job table lacks migration 0002_job_life (${
          missing.join(", ")
        }): dead jobs (max attempts), stored last errors and the dispatched, dead and cancelled states are off; failures only back off. Run \`garivini migrate\` to turn them on`
      )
      // Leases and priorities are written with migration 2's columns: without them they are off
      // too (the warning above already says to migrate).
      return { life: false, leases: false, priority: false, traces: names.has(TRACEPARENT_COLUMN) }
    }
    if (missingLeases.length > 0) {
      yield* Effect.logWarning(
        `the job table lacks migration 0004_leases (${
          missingLeases.join(", ")
        }): lease tokens (fenced completions), heartbeats and the running state are off; completions apply by jobid alone. Run \`garivini migrate\` to turn them on`
      )
    }
    const priority = names.has(PRIORITY_COLUMN)
    if (!priority) {
      yield* Effect.logWarning(
        "the job table lacks migration 0005_flow_priority: job priorities are ignored and concurrency limits are off. Run `garivini migrate` to turn them on"
      )
    }
    return { life: true, leases: missingLeases.length === 0, priority, traces: yield* tracesColumn(names) }
  })

/** Migration 7's column (checked on its own: it needs none of the others). */
const tracesColumn = (names: ReadonlySet<string>) =>
  names.has(TRACEPARENT_COLUMN) ? Effect.succeed(true) : Effect.as(
    Effect.logWarning(
      "the job table lacks migration 0007_traceparent: jobs store no trace context, so a trace ends at the insert. Run `garivini migrate` to turn it on"
    ),
    false
  )

/**
 * A failure after the statement timeout closed the connection, named as such and of the same
 * kind: a lost answer stays outcome-unknown, a transaction cut before COMMIT stays unreached,
 * and an error the server sent meanwhile stays a refusal.
 */
const timedOut = (after: Duration.Duration, failure: ShardFailure): ShardFailure => {
  if (failure._tag === "ShardRejected") return failure
  const reason = `no answer within ${Duration.format(after)} (statement timeout); connection closed: ${failure.reason}`
  return failure._tag === "ShardUnreached"
    ? new ShardUnreached({ reason, cause: failure })
    : new ShardLost({ reason, cause: failure })
}

/** Inside a transaction nothing is applied before COMMIT: a lost connection there applied nothing. */
const notApplied = (failure: ShardFailure): ShardFailure =>
  failure._tag === "ShardLost"
    ? new ShardUnreached({ reason: `${failure.reason}; rolled back before commit`, cause: failure.cause })
    : failure
