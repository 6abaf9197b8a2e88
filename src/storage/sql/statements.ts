/**
 * The statements both SQL dialects run as they are: MySQL and SQLite accept backtick-quoted
 * identifiers, `SUM(condition)` and an inlined `LIMIT`. What differs (id lists, row locks,
 * inserts) is in the dialect records (mysql.ts, sqlite.ts).
 */
import { Effect, Schema } from "effect"
import { LenientInt, NEVER } from "../../Job.js"
import type { StoredJob } from "../../Job.js"
import type { ShardRejected } from "../ShardBackend.js"
import type { FunctionCounts, ShardListQuery } from "../ShardBackend.js"
import { badData } from "./rows.js"

export const JOB_COLUMNS = "jobid, funcname, arg, uniqkey, `coalesce`, run_after, flag, failcount"

export interface Statement {
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
}

/** Per function: due, scheduled and never jobs, and the oldest due `run_after`. */
export const countsStatement = (now: number): Statement => ({
  sql: `SELECT funcname,
     SUM(run_after <= ?) AS due,
     SUM(run_after > ? AND run_after < ${NEVER}) AS scheduled,
     SUM(run_after >= ${NEVER}) AS never_,
     MIN(CASE WHEN run_after <= ? THEN run_after END) AS oldest_due
   FROM job GROUP BY funcname ORDER BY funcname`,
  params: [now, now, now]
})

const CountRow = Schema.Struct({
  funcname: Schema.String,
  due: LenientInt,
  scheduled: LenientInt,
  never_: LenientInt,
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
        due: c.due,
        scheduled: c.scheduled,
        never: c.never_,
        oldestDue: c.oldest_due
      }))
    )
  )

/**
 * One page of jobs, filtered, by jobid or by (run_after, jobid) after a cursor (keyset paging:
 * the `run_after` index holds the primary key, so both orders are index scans). LIMIT inlined:
 * a validated integer.
 */
export const listStatement = (q: ShardListQuery): Statement => {
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
  if (q.state === "due") {
    where.push("run_after <= ?")
    params.push(q.now)
  } else if (q.state === "scheduled") {
    where.push(`run_after > ? AND run_after < ${NEVER}`)
    params.push(q.now)
  } else if (q.state === "never") {
    where.push(`run_after >= ${NEVER}`)
  }
  const order = q.order === "runAfter" ? "run_after, jobid" : "jobid"
  return {
    sql: `SELECT ${JOB_COLUMNS} FROM job${
      where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""
    } ORDER BY ${order} LIMIT ${q.limit}`,
    params
  }
}

// -- the byte-bounded claim ----------------------------------------------------------------------

/**
 * The claim's columns. An arg over `inlineMax` bytes is not loaded (NULL) but its size is: the
 * claim takes rows while their args fit the budget and loads the large args it took afterwards,
 * so ordinary small jobs cost no extra round trip and memory is bounded in bytes, not rows.
 */
export const claimColumns = (inlineMax: number) =>
  `jobid, funcname, CASE WHEN LENGTH(arg) <= ${inlineMax} THEN arg END AS arg, uniqkey, \`coalesce\`, run_after, flag, failcount, LENGTH(arg) AS arg_bytes`

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
