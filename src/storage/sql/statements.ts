/**
 * The statements both SQL dialects run as they are: MySQL and SQLite accept backtick-quoted
 * identifiers, `SUM(condition)` and an inlined `LIMIT`. What differs (id lists, row locks,
 * inserts) is in the dialect records (mysql.ts, sqlite.ts).
 */
import { Effect, Schema } from "effect"
import { JOB_STATES, LenientInt, NEVER } from "../../Job.js"
import type { JobLife, JobRecord, JobState, StoredJob } from "../../Job.js"
import { isTraceparent } from "../../tracing/traceparent.js"
import type { ShardRejected } from "../ShardBackend.js"
import type { FunctionCounts, ShardListQuery } from "../ShardBackend.js"
import { badData } from "./rows.js"

export const JOB_COLUMNS = "jobid, funcname, arg, uniqkey, `coalesce`, run_after, flag, failcount"

export interface Statement {
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
}

/** Migration 2's columns, read by inspection (get, list) on a table that has them. */
export const LIFE_COLUMNS = "last_error, last_error_at, last_error_attempt, ended, ended_at, leased_until"

/** The columns inspection reads beside JOB_COLUMNS: migration 2's, and migration 4's heartbeat. */
export const inspectedColumns = (life: boolean, leases: boolean): string =>
  life ? `, ${LIFE_COLUMNS}${leases ? ", heartbeat_at" : ""}` : ""

/**
 * The rows in `state` at the time bound to each `?` (`params` is how many): Job.jobState in SQL,
 * one definition for `list` and `counts`. On a v1 table (`life` false) nothing is dispatched,
 * dead or cancelled, as jobState says of rows whose life columns are all NULL; without migration
 * 4 (`leases` false) nothing is running (no heartbeat column).
 */
export const stateCondition = (
  state: JobState,
  life: boolean,
  leases = false
): { readonly sql: string; readonly params: number } => {
  const live = life ? "ended IS NULL AND " : ""
  const future = `${live}run_after > ? AND run_after < ${NEVER}`
  // COALESCE: every condition is true or false, never NULL (SUM of NULLs is NULL); run_after is
  // above now (>= 0) where a lease is compared, so a NULL lease never equals it.
  const notLeased = life ? " AND COALESCE(leased_until, 0) <> run_after" : ""
  switch (state) {
    case "due":
      return { sql: `${live}run_after <= ?`, params: 1 }
    case "never":
      return { sql: `${live}run_after >= ${NEVER}`, params: 0 }
    case "scheduled":
      return { sql: `${future}${notLeased} AND failcount = 0`, params: 1 }
    case "retrying":
      return { sql: `${future}${notLeased} AND failcount > 0`, params: 1 }
    case "dispatched":
      return life
        ? {
          sql: `${future} AND COALESCE(leased_until, 0) = run_after${leases ? " AND heartbeat_at IS NULL" : ""}`,
          params: 1
        }
        : NONE
    case "running":
      return life && leases
        ? { sql: `${future} AND COALESCE(leased_until, 0) = run_after AND heartbeat_at IS NOT NULL`, params: 1 }
        : NONE
    case "dead":
      return life ? { sql: "COALESCE(ended, '') = 'dead'", params: 0 } : NONE
    case "cancelled":
      return life ? { sql: "COALESCE(ended, '') = 'cancelled'", params: 0 } : NONE
  }
}
const NONE = { sql: "1 = 0", params: 0 }

/** Per function: the jobs in each state (one SUM per state), and the oldest due `run_after`. */
export const countsStatement = (now: number, life: boolean, leases = false): Statement => {
  const sums: Array<string> = []
  const params: Array<unknown> = []
  for (const state of JOB_STATES) {
    const c = stateCondition(state, life, leases)
    sums.push(`SUM(${c.sql}) AS ${state}_n`)
    for (let i = 0; i < c.params; i++) params.push(now)
  }
  const due = stateCondition("due", life)
  return {
    sql: `SELECT funcname, ${sums.join(", ")}, MIN(CASE WHEN ${due.sql} THEN run_after END) AS oldest_due
   FROM job GROUP BY funcname ORDER BY funcname`,
    params: [...params, now]
  }
}

const CountRow = Schema.Struct({
  funcname: Schema.String,
  due_n: LenientInt,
  scheduled_n: LenientInt,
  retrying_n: LenientInt,
  dispatched_n: LenientInt,
  running_n: LenientInt,
  never_n: LenientInt,
  dead_n: LenientInt,
  cancelled_n: LenientInt,
  oldest_due: Schema.NullOr(LenientInt)
})
const decodeCounts = Schema.decodeUnknown(Schema.Array(CountRow))

export const countsFromRows = (
  dbid: number,
  rows: unknown
): Effect.Effect<ReadonlyArray<FunctionCounts>, ShardRejected> =>
  decodeCounts(rows).pipe(
    Effect.mapError(badData("counts")),
    Effect.map((decoded) =>
      decoded.map((c): FunctionCounts => ({
        dbid,
        funcname: c.funcname,
        due: c.due_n,
        scheduled: c.scheduled_n,
        retrying: c.retrying_n,
        dispatched: c.dispatched_n,
        running: c.running_n,
        never: c.never_n,
        dead: c.dead_n,
        cancelled: c.cancelled_n,
        oldestDue: c.oldest_due
      }))
    )
  )

/**
 * One page of jobs, filtered, by jobid or by (run_after, jobid) after a cursor (keyset paging:
 * the `run_after` index holds the primary key, so both orders are index scans). LIMIT inlined:
 * a validated integer.
 */
export const listStatement = (q: ShardListQuery, life: boolean, leases = false): Statement => {
  const where: Array<string> = []
  const params: Array<unknown> = []
  if (q.order === "runAfter") {
    if (q.afterRunAfter !== undefined) {
      where.push("(run_after > ? OR (run_after = ? AND jobid > ?))")
      params.push(q.afterRunAfter, q.afterRunAfter, q.afterJobid ?? 0)
    }
  } else {
    where.push("jobid > ?")
    params.push(q.afterJobid ?? 0)
  }
  if (q.funcname !== undefined) {
    where.push("funcname = ?")
    params.push(q.funcname)
  }
  if (q.uniqkeyContains !== undefined) {
    // INSTR, not LIKE: no wildcards to escape, and case-sensitive in both dialects (LIKE is not
    // in SQLite), as utf8mb4_bin and the memory shard compare.
    where.push("INSTR(uniqkey, ?) > 0")
    params.push(q.uniqkeyContains)
  }
  if (q.state !== undefined) {
    const c = stateCondition(q.state, life, leases)
    where.push(c.sql)
    for (let i = 0; i < c.params; i++) params.push(q.now)
  }
  const order = q.order === "runAfter" ? "run_after, jobid" : "jobid"
  return {
    sql: `SELECT ${JOB_COLUMNS}${inspectedColumns(life, leases)} FROM job${
      where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""
    } ORDER BY ${order} LIMIT ${q.limit}`,
    params
  }
}

/** Migration 2's columns of a row (LIFE_COLUMNS), as stored. */
const LifeRow = Schema.Struct({
  last_error: Schema.NullOr(Schema.String),
  last_error_at: Schema.NullOr(LenientInt),
  last_error_attempt: Schema.NullOr(LenientInt),
  ended: Schema.NullOr(Schema.Literal("dead", "cancelled")),
  ended_at: Schema.NullOr(LenientInt),
  leased_until: Schema.NullOr(LenientInt),
  // Absent without migration 4.
  heartbeat_at: Schema.optionalWith(Schema.NullOr(LenientInt), { default: () => null })
})
const decodeLifeRows = Schema.decodeUnknown(Schema.Array(LifeRow))

/** Jobs decoded from the same rows, with their life columns (inspection only: not a hot path). */
export const withLife = (
  jobs: ReadonlyArray<StoredJob>,
  rows: unknown
): Effect.Effect<ReadonlyArray<JobRecord>, ShardRejected> =>
  Effect.map(Effect.mapError(decodeLifeRows(rows), badData("job rows")), (life) =>
    jobs.map((job, i): JobRecord => {
      const l = life[i]!
      const fields: JobLife = {
        lastError: l.last_error,
        lastErrorAt: l.last_error_at,
        lastErrorAttempt: l.last_error_attempt,
        ended: l.ended,
        endedAt: l.ended_at,
        leasedUntil: l.leased_until,
        heartbeatAt: l.heartbeat_at
      }
      return { ...job, ...fields }
    }))

// -- the byte-bounded claim ----------------------------------------------------------------------

/**
 * The claim's columns. An arg over `inlineMax` bytes is not loaded (NULL) but its size is: the
 * claim takes rows while their args fit the budget and loads the large args it took afterwards,
 * so ordinary small jobs cost no extra round trip and memory is bounded in bytes, not rows.
 */
export const claimColumns = (inlineMax: number) =>
  `jobid, funcname, CASE WHEN LENGTH(arg) <= ${inlineMax} THEN arg END AS arg, uniqkey, \`coalesce\`, run_after, flag, failcount, LENGTH(arg) AS arg_bytes`

/**
 * The claimed jobs with their priority (migration 0005's column, read by the claim when the table
 * has it), set only on those that are not normal, as ValidNewJob has it.
 */
export const withPriority = (jobs: ReadonlyArray<StoredJob>, raw: unknown): ReadonlyArray<StoredJob> => {
  const rows: ReadonlyArray<unknown> = Array.isArray(raw) ? raw : []
  return jobs.map((job, i) => {
    const row = rows[i]
    const v = typeof row === "object" && row !== null && "priority" in row ? Number(row.priority) : 0
    return v > 0 ? { ...job, priority: "high" } : v < 0 ? { ...job, priority: "low" } : job
  })
}

/**
 * The claimed jobs with their stored traceparent (migration 7's column, read by the claim when
 * the table has it). Only a row holding a valid one gets it: a value another writer mangled is
 * dropped (it would make the worker JSON undecodable), not carried.
 */
export const withTraceparent = (jobs: ReadonlyArray<StoredJob>, raw: unknown): ReadonlyArray<StoredJob> => {
  const rows: ReadonlyArray<unknown> = Array.isArray(raw) ? raw : []
  let out: Array<StoredJob> | undefined
  for (let i = 0; i < jobs.length; i++) {
    const row = rows[i]
    const tp = typeof row === "object" && row !== null && "traceparent" in row ? row.traceparent : null
    if (tp === null || tp === undefined || !isTraceparent(tp)) continue
    out ??= jobs.slice()
    out[i] = { ...jobs[i]!, traceparent: tp }
  }
  return out ?? jobs
}

/** Bytes of arg a claim loads per row in its first statement: the budget shared by the rows. */
export const inlineLimit = (limit: number, maxBytes: number): number => Math.floor(maxBytes / limit)

const argBytesOf = (row: unknown): number => {
  if (typeof row !== "object" || row === null || !("arg_bytes" in row)) return 0
  const v = row.arg_bytes
  const n = typeof v === "number" ? v : typeof v === "string" || typeof v === "bigint" ? Number(v) : 0
  return Number.isFinite(n) ? n : 0
}

/**
 * Of the due rows (oldest first), those a claim takes: while their args fit `maxBytes`, and
 * always the first (a job larger than the budget still runs, alone); and the ids of the taken
 * rows whose arg was too large to load with them.
 */
export const withinBudget = (
  raw: unknown,
  jobs: ReadonlyArray<StoredJob>,
  maxBytes: number,
  inlineMax: number
): { readonly take: ReadonlyArray<StoredJob>; readonly fetch: ReadonlyArray<number> } => {
  const rawRows: ReadonlyArray<unknown> = Array.isArray(raw) ? raw : []
  const take: Array<StoredJob> = []
  const fetch: Array<number> = []
  let total = 0
  for (let i = 0; i < jobs.length; i++) {
    const bytes = argBytesOf(rawRows[i])
    if (i > 0 && total + bytes > maxBytes) break
    total += bytes
    take.push(jobs[i]!)
    if (bytes > inlineMax) fetch.push(jobs[i]!.jobid)
  }
  return { take, fetch }
}

const ArgRow = Schema.Struct({ jobid: LenientInt, arg: Schema.NullOr(Schema.Uint8ArrayFromSelf) })
const decodeArgRows = Schema.decodeUnknown(Schema.Array(ArgRow))

/** The taken jobs with the args loaded afterwards (`SELECT jobid, arg` rows) put in. */
export const withArgs = (
  take: ReadonlyArray<StoredJob>,
  rows: unknown
): Effect.Effect<ReadonlyArray<StoredJob>, ShardRejected> =>
  Effect.map(Effect.mapError(decodeArgRows(rows), badData("arg rows")), (decoded) => {
    const args = new Map(decoded.map((r) => [r.jobid, r.arg ?? new Uint8Array(0)] as const))
    return take.map((job) => {
      const arg = args.get(job.jobid)
      return arg === undefined ? job : { ...job, arg }
    })
  })
