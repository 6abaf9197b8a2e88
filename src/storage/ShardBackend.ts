/**
 * One shard's primitive operations, implemented by the SQL shard (MySQL and SQLite dialects) and
 * the memory shard. Routing, validation, cool-off and error mapping live once above this
 * (`Storage.make`, `routing.ts`, `failures.ts`).
 *
 * A backend reports failures in three kinds, because they call for different actions:
 * - `ShardUnreached`: nothing reached the server (connect or acquire failed): safe to move an
 *   insert to another shard;
 * - `ShardRejected`: the server answered with an error: the statement was not applied;
 * - `ShardLost`: the outcome is unknown: the connection broke after a statement was sent, or a
 *   step after an insert committed (the duplicate lookup) failed.
 */
import type { Effect, Option } from "effect"
import { Data } from "effect"
import type { StoredJob, ValidNewJob } from "../Job.js"

/** What every failure carries: a one-line reason, the server's error code if any, the driver's error. */
interface FailureFields {
  readonly reason: string
  readonly code?: string | undefined
  readonly cause?: unknown
}
export class ShardUnreached extends Data.TaggedError("ShardUnreached")<FailureFields> {}
export class ShardRejected extends Data.TaggedError("ShardRejected")<FailureFields> {}
export class ShardLost extends Data.TaggedError("ShardLost")<FailureFields> {}
export type ShardFailure = ShardUnreached | ShardRejected | ShardLost

/**
 * A failure after an insert stored rows (`committed`): whatever its kind, the caller must not
 * read "not stored", so it is `ShardLost` (outcome unknown). Before any commit it stays as it is.
 */
export const afterCommit = (committed: boolean, step: string) => (failure: ShardFailure): ShardFailure =>
  !committed || failure._tag === "ShardLost"
    ? failure
    : new ShardLost({ reason: `jobs were stored, then ${step} failed: ${failure.reason}`, cause: failure })

/** Per row of an insert: the new jobid, or the existing job's id (null if it vanished meanwhile). */
export type RowInsert =
  | { readonly _tag: "Inserted"; readonly jobid: number }
  | { readonly _tag: "Duplicate"; readonly existing: number | null }

export type JobState = "due" | "scheduled" | "never"

/** Per shard and function: how many jobs are due, scheduled (future, incl. leased) and `never`. */
export interface FunctionCounts {
  readonly dbid: number
  readonly funcname: string
  readonly due: number
  readonly scheduled: number
  readonly never: number
  /** `run_after` of the oldest due job, if any is due. */
  readonly oldestDue: number | null
}

export interface ShardListQuery {
  readonly funcname?: string | undefined
  readonly state?: JobState | undefined
  /** Only jobs whose unique key contains this text (exactly, case-sensitive as the column). */
  readonly uniqkeyContains?: string | undefined
  /**
   * `jobid` (default): only jobs with a larger jobid than `afterJobid`. `runAfter`: by
   * `(run_after, jobid)`, only jobs after `afterRunAfter` (and `afterJobid` among equal ones).
   */
  readonly order?: "jobid" | "runAfter" | undefined
  /** Only jobs with a larger jobid (paging cursor). */
  readonly afterJobid?: number | undefined
  readonly afterRunAfter?: number | undefined
  readonly limit: number
  readonly now: number
}

export interface ShardBackend {
  readonly dbid: number
  /** The largest `arg` this shard can take in one statement (its max_allowed_packet, less overhead). */
  readonly maxArgBytes: Effect.Effect<number, ShardFailure>
  /** Stores rows (INSERT IGNORE semantics); one result per row, in order. */
  readonly insert: (rows: ReadonlyArray<ValidNewJob>) => Effect.Effect<ReadonlyArray<RowInsert>, ShardFailure>
  /**
   * Atomically: due jobs (run_after <= now) of functions not in `exclude`, oldest first, at most
   * `limit` and while their args total at most `maxBytes` (always at least one), moved to
   * `leaseUntil`; returned as before the move.
   */
  readonly claimDue: (
    now: number,
    limit: number,
    leaseUntil: number,
    exclude: ReadonlyArray<string>,
    maxBytes: number
  ) => Effect.Effect<ReadonlyArray<StoredJob>, ShardFailure>
  readonly setRunAfter: (jobids: ReadonlyArray<number>, runAfter: number) => Effect.Effect<number, ShardFailure>
  readonly remove: (jobids: ReadonlyArray<number>) => Effect.Effect<number, ShardFailure>
  readonly reschedule: (jobid: number, runAfter: number, failcount: number) => Effect.Effect<boolean, ShardFailure>
  /** Makes `never` jobs of a function due; returns how many. */
  readonly retryNever: (funcname: string, now: number) => Effect.Effect<number, ShardFailure>
  readonly counts: (now: number) => Effect.Effect<ReadonlyArray<FunctionCounts>, ShardFailure>
  readonly list: (query: ShardListQuery) => Effect.Effect<ReadonlyArray<StoredJob>, ShardFailure>
  readonly get: (jobid: number) => Effect.Effect<Option.Option<StoredJob>, ShardFailure>
}
