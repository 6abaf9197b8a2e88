/**
 * The statements the SQL backends (MySQL and SQLite) share: both accept backtick-quoted
 * identifiers, `SUM(condition)` and an inlined `LIMIT`, so the read side is written once.
 */
import { Effect, Schema } from "effect"
import { jobFromRow, JobRow, LenientInt, NEVER } from "../Job.js"
import type { Job } from "../Job.js"
import { ShardRejected } from "./ShardBackend.js"
import type { FunctionCounts, ShardListQuery } from "./ShardBackend.js"

export const JOB_COLUMNS = "jobid, funcname, arg, uniqkey, `coalesce`, run_after, flag, failcount"

/** A row the server sent that does not match the schema: the table is not Garivini's. */
export const badData = (what: string) => (e: unknown) =>
  new ShardRejected({ reason: `unexpected ${what} from the server: ${String(e)}` })

const decodeJobRows = Schema.decodeUnknown(Schema.Array(JobRow))

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0
const isText = (v: unknown): v is string | null => v === null || typeof v === "string"

/**
 * A row as our own tables hand it back (numbers as numbers, a Buffer or NULL arg, a known flag),
 * checked field by field: a claim decodes up to a thousand rows, and Schema cost several µs each.
 * Anything else goes to the Schema decoder, which accepts what other writers store and words
 * the errors (the two agree: test/storage/sqlRows.test.ts).
 */
const fastJob = (dbid: number, row: unknown): Job | undefined => {
  if (typeof row !== "object" || row === null) return undefined
  const { arg, coalesce, failcount, flag, funcname, jobid, run_after, uniqkey } = row as { readonly [key: string]: unknown }
  if (!isCount(jobid) || typeof funcname !== "string" || !isCount(run_after) || !isCount(failcount)) return undefined
  if (!(arg === null || arg instanceof Uint8Array) || !isText(uniqkey) || !isText(coalesce)) return undefined
  const known = flag === null || flag === "" || flag === "shim" ? "shim" : flag === "controller" ? "controller" : undefined
  if (known === undefined) return undefined
  return { dbid, jobid, funcname, arg: arg ?? new Uint8Array(0), uniqkey, coalesce, runAfter: run_after, flag: known, failcount }
}

/** Decodes rows of JOB_COLUMNS into jobs of shard `dbid`. */
export const jobsFromRows = (dbid: number, rows: unknown): Effect.Effect<ReadonlyArray<Job>, ShardRejected> => {
  if (Array.isArray(rows)) {
    const jobs: Array<Job> = []
    for (const row of rows) {
      const job = fastJob(dbid, row)
      if (job === undefined) break
      jobs.push(job)
    }
    if (jobs.length === rows.length) return Effect.succeed(jobs)
  }
  return jobsFromRowsWithSchema(dbid, rows)
}

/** The Schema decoder of job rows (every shape a Garivini table may hold). */
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
