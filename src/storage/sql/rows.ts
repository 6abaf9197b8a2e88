/**
 * What the SQL drivers send back, decoded at the edge: job rows, the rows of `INSERT ...
 * RETURNING` and MySQL's result headers. Each shape has one definition, a Schema; where a
 * hand-written guard for the drivers' usual output measurably pays (docs/performance.md,
 * "One definition per shape"), it sits beside its Schema and test/storage/rows.test.ts checks
 * that the two agree.
 */
import { Effect, Schema } from "effect"
import { fastJobRow, jobFromRow, JobRow, LenientInt } from "../../Job.js"
import type { StoredJob } from "../../Job.js"
import { ShardRejected } from "../ShardBackend.js"

/** A row the server sent that does not match the schema: the table is not Garivini's. */
export const badData = (what: string) => (e: unknown) =>
  new ShardRejected({ reason: `unexpected ${what} from the server: ${String(e)}`, cause: e })

// -- job rows (JOB_COLUMNS): the JobRow schema, and Job.fastJobRow as its guard -------------------

const decodeJobRows = Schema.decodeUnknown(Schema.Array(JobRow))

/** The JobRow schema over every row (numeric strings, a NULL or empty flag, and errors). */
export const jobsFromRowsWithSchema = (
  dbid: number,
  rows: unknown
): Effect.Effect<ReadonlyArray<StoredJob>, ShardRejected> =>
  decodeJobRows(rows).pipe(
    Effect.mapError(badData("job rows")),
    Effect.map((decoded) => decoded.map((row) => jobFromRow(dbid, row)))
  )

/** Rows as jobs when every row has the usual shape (`fastJobRow`), else undefined. */
const fastJobRows = (dbid: number, rows: unknown): ReadonlyArray<StoredJob> | undefined => {
  if (!Array.isArray(rows)) return undefined
  const jobs: Array<StoredJob> = new Array(rows.length)
  for (let i = 0; i < rows.length; i++) {
    const job = fastJobRow(dbid, rows[i])
    if (job === undefined) return undefined
    jobs[i] = job
  }
  return jobs
}

/** Decodes rows of JOB_COLUMNS into jobs of shard `dbid`: the guard first, the schema for unusual rows. */
export const jobsFromRows = (dbid: number, rows: unknown): Effect.Effect<ReadonlyArray<StoredJob>, ShardRejected> => {
  const fast = fastJobRows(dbid, rows)
  return fast !== undefined ? Effect.succeed(fast) : jobsFromRowsWithSchema(dbid, rows)
}

// -- RETURNING jobid, funcname, uniqkey (and the duplicate lookup) ----------------------------------

export const ReturnedRow = Schema.Struct({
  jobid: LenientInt,
  funcname: Schema.String,
  uniqkey: Schema.NullOr(Schema.String)
})
export type ReturnedRow = typeof ReturnedRow.Type
const decodeReturnedWithSchema = Schema.decodeUnknown(Schema.Array(ReturnedRow))

/** ReturnedRow's guard: the shape mysql2 sends (jobid a number), a few field tests instead of a decode. */
export const isReturnedRow = (row: unknown): row is ReturnedRow => {
  if (typeof row !== "object" || row === null || !("jobid" in row) || !("funcname" in row) || !("uniqkey" in row))
    return false
  const { funcname, jobid, uniqkey } = row
  return typeof jobid === "number" && Number.isSafeInteger(jobid) && jobid >= 0 && typeof funcname === "string" &&
    (uniqkey === null || typeof uniqkey === "string")
}

/** The rows of `RETURNING jobid, funcname, uniqkey`: the guard for the usual rows, else the schema. */
export const decodeReturned = (rows: unknown): Effect.Effect<ReadonlyArray<ReturnedRow>, ShardRejected> =>
  Array.isArray(rows) && rows.every(isReturnedRow)
    ? Effect.succeed<ReadonlyArray<ReturnedRow>>(rows)
    : Effect.mapError(decodeReturnedWithSchema(rows), badData("RETURNING rows"))

// -- A claim's lease columns (migration 4) ----------------------------------------------------------

export const ClaimLeaseRow = Schema.Struct({
  lease_token: Schema.NullOr(Schema.String),
  heartbeat_at: Schema.NullOr(LenientInt)
})
export type ClaimLeaseRow = typeof ClaimLeaseRow.Type
const decodeClaimLeasesWithSchema = Schema.decodeUnknown(Schema.Array(ClaimLeaseRow))

/** ClaimLeaseRow's guard: the shape both drivers send, two field tests instead of a decode. */
export const isClaimLeaseRow = (row: unknown): row is ClaimLeaseRow => {
  if (typeof row !== "object" || row === null || !("lease_token" in row) || !("heartbeat_at" in row)) return false
  const { heartbeat_at, lease_token } = row
  return (lease_token === null || typeof lease_token === "string") &&
    (heartbeat_at === null ||
      (typeof heartbeat_at === "number" && Number.isSafeInteger(heartbeat_at) && heartbeat_at >= 0))
}

/** The lease columns of a claim's rows (one per claimed job: on its hot path): the guard, else the schema. */
export const decodeClaimLeases = (rows: unknown): Effect.Effect<ReadonlyArray<ClaimLeaseRow>, ShardRejected> =>
  Array.isArray(rows) && rows.every(isClaimLeaseRow)
    ? Effect.succeed<ReadonlyArray<ClaimLeaseRow>>(rows)
    : Effect.mapError(decodeClaimLeasesWithSchema(rows), badData("lease columns"))

// -- MySQL's result header (every INSERT / UPDATE / DELETE) -----------------------------------------

/** mysql2's ResultSetHeader: every INSERT / UPDATE / DELETE has one. */
export const ResultHeader = Schema.Struct({ affectedRows: Schema.Number, insertId: LenientInt })
const decodeHeaderWithSchema = Schema.decodeUnknown(ResultHeader)

/** ResultHeader's guard: the shape mysql2 sends, two field tests instead of a decode. */
export const isResultHeader = (raw: unknown): raw is typeof ResultHeader.Type => {
  if (typeof raw !== "object" || raw === null || !("affectedRows" in raw) || !("insertId" in raw)) return false
  const { affectedRows, insertId } = raw
  return typeof affectedRows === "number" && typeof insertId === "number" && Number.isSafeInteger(insertId) &&
    insertId >= 0
}

/** The guard for the usual header (docs/performance.md: measured per statement), else the schema. */
export const decodeHeader = (raw: unknown): Effect.Effect<typeof ResultHeader.Type, ShardRejected> =>
  isResultHeader(raw) ? Effect.succeed(raw) : Effect.mapError(decodeHeaderWithSchema(raw), badData("result"))

// -- SQLite's run result -------------------------------------------------------------------------

export const RunResult = Schema.Struct({
  changes: Schema.Number,
  lastInsertRowid: Schema.Union(Schema.Number, Schema.BigIntFromSelf)
})
const decodeRunResultWithSchema = Schema.decodeUnknown(RunResult)
export const decodeRunResult = (raw: unknown): Effect.Effect<typeof RunResult.Type, ShardRejected> =>
  Effect.mapError(decodeRunResultWithSchema(raw), badData("result"))
