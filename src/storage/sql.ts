/**
 * The statements the SQL backends (MySQL and SQLite) share: both accept backtick-quoted
 * identifiers, `SUM(condition)` and an inlined `LIMIT`, so the read side is written once.
 */
import { Effect, Schema } from "effect"
import { fastJobRow, jobFromRow, JobRow, LenientInt, NEVER } from "../Job.js"
import type { Job } from "../Job.js"
import { ShardRejected } from "./ShardBackend.js"
import type { FunctionCounts, ShardListQuery } from "./ShardBackend.js"

export const JOB_COLUMNS = "jobid, funcname, arg, uniqkey, `coalesce`, run_after, flag, failcount"

/** A row the server sent that does not match the schema: the table is not Garivini's. */
export const badData = (what: string) => (e: unknown) =>
  new ShardRejected({ reason: `unexpected ${what} from the server: ${String(e)}` })

const decodeJobRows = Schema.decodeUnknown(Schema.Array(JobRow))

/** Rows of JOB_COLUMNS as jobs when every row has the usual shape (fastJobRow), else undefined. */
const fastJobRows = (dbid: number, rows: unknown): ReadonlyArray<Job> | undefined => {
  if (!Array.isArray(rows)) return undefined
  const jobs: Array<Job> = new Array(rows.length)
  for (let i = 0; i < rows.length; i++) {
    const job = fastJobRow(dbid, rows[i])
    if (job === undefined) return undefined
    jobs[i] = job
  }
  return jobs
}

/** Decodes rows of JOB_COLUMNS into jobs of shard `dbid` (the JobRow schema for unusual rows). */
export const jobsFromRows = (dbid: number, rows: unknown): Effect.Effect<ReadonlyArray<Job>, ShardRejected> => {
  const fast = fastJobRows(dbid, rows)
  return fast !== undefined ? Effect.succeed(fast) : jobsFromRowsWithSchema(dbid, rows)
}

/** The JobRow schema over every row (numeric strings, a NULL or empty flag, and errors). */
export const jobsFromRowsWithSchema = (dbid: number, rows: unknown): Effect.Effect<ReadonlyArray<Job>, ShardRejected> =>
  decodeJobRows(rows).pipe(
    Effect.mapError(badData("job rows")),
    Effect.map((decoded) => decoded.map((row) => jobFromRow(dbid, row)))
  )

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

export const countsFromRows = (dbid: number, rows: unknown): Effect.Effect<ReadonlyArray<FunctionCounts>, ShardRejected> =>
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

/** One page of jobs by jobid, filtered (LIMIT inlined: a validated integer). */
export const listStatement = (q: ShardListQuery): Statement => {
  const where: Array<string> = ["jobid > ?"]
  const params: Array<unknown> = [q.afterJobid ?? 0]
  if (q.funcname !== undefined) {
    where.push("funcname = ?")
    params.push(q.funcname)
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
  return { sql: `SELECT ${JOB_COLUMNS} FROM job WHERE ${where.join(" AND ")} ORDER BY jobid LIMIT ${q.limit}`, params }
}
