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
import type { JobEnd, JobRecord, JobState, StoredJob, ValidNewJob } from "../Job.js"
import type { Bucket, ControlPatch, FunctionControl, RateLimit, ScheduleRow } from "./flow.js"

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

export type { JobState } from "../Job.js"

/** Per shard and function: how many jobs are in each state (Job.jobState), and the oldest due. */
export interface FunctionCounts {
  readonly dbid: number
  readonly funcname: string
  readonly due: number
  readonly scheduled: number
  readonly retrying: number
  readonly dispatched: number
  readonly running: number
  readonly never: number
  readonly dead: number
  readonly cancelled: number
  /** `run_after` of the oldest due job, if any is due. */
  readonly oldestDue: number | null
}

/** Every job a count covers, in any state. */
export const countedJobs = (c: FunctionCounts): number =>
  c.due + c.scheduled + c.retrying + c.dispatched + c.running + c.never + c.dead + c.cancelled

/** A failure to record on one job (its row's last error, and dead when its attempts are used up). */
export interface FailureRecord {
  /** When it runs again if it is not dead (the backoff). */
  readonly runAfter: number
  /** Failures so far, this one included: the attempts made. */
  readonly failcount: number
  /** The failure's text, bounded (Job.boundedError); absent: the last error is left as it is. */
  readonly error: string | undefined
  /** Now, in unix seconds: the error's time, and `ended_at` if it dies. */
  readonly at: number
  /** Its attempts are used up: `ended = 'dead'`, run_after never (ignored on a v1 table). */
  readonly dead: boolean
}

/**
 * What recording a failure did: the row was gone (or cancelled), it backs off, it is dead now,
 * or nothing changed because the row's lease token is no longer the one given (`fenced`).
 */
export type FailOutcome = "missing" | "retrying" | "dead" | "fenced"

/** What a reschedule did: done, no such live job, or refused because its lease had passed on. */
export type RescheduleOutcome = "rescheduled" | "missing" | "fenced"

/**
 * A job as its holder names it when settling it: its row, and the lease token it was dispatched
 * under. With a token the statement applies only while the row still holds it (on a table with
 * migration 4); without one, by jobid alone (a Perl dispatcher's job, an operator's command).
 */
export interface HeldRow {
  readonly jobid: number
  readonly lease?: string | undefined
}

/** What deleting completed jobs did: rows deleted, and the jobids whose token no longer held. */
export interface RemoveResult {
  readonly deleted: number
  readonly fenced: ReadonlyArray<number>
}

/**
 * What one heartbeat did: leases extended, and the rows not extended because they were
 * cancelled (their handlers are to be interrupted) or are no longer held with that token
 * (completed elsewhere, deleted, or leased again: the holder has lost them).
 */
export interface HeartbeatResult {
  readonly extended: number
  readonly cancelled: ReadonlyArray<number>
  readonly lost: ReadonlyArray<number>
}

/**
 * What cancelling one job did: it is cancelled now, there was no such job, or it had already
 * ended so (dead, cancelled: left as it was). `unsupported`: a v1 table (no `ended` column).
 */
export type CancelOutcome = "cancelled" | "missing" | "dead" | "already-cancelled"
export type ShardCancelOutcome = CancelOutcome | "unsupported"

/** Which dead jobs to make due again: one, a function's, or all. */
export interface DeadTarget {
  readonly jobid?: number | undefined
  readonly funcname?: string | undefined
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
   * Atomically: due jobs (run_after <= now) of functions not in `exclude` (of function `only`
   * when given), oldest first, at most
   * `limit` and while their args total at most `maxBytes` (always at least one), moved to
   * `leaseUntil` (and `leased_until` set to it, in the same statement); returned as before the
   * move, each with its lease token (migration 4): the row's own while no heartbeat was seen on
   * it (a re-dispatch gearmand merges into a copy it still holds carries that token), else
   * `token`; the heartbeat is cleared.
   */
  readonly claimDue: (
    now: number,
    limit: number,
    leaseUntil: number,
    token: string,
    exclude: ReadonlyArray<string>,
    maxBytes: number,
    only?: string | undefined
  ) => Effect.Effect<ReadonlyArray<StoredJob>, ShardFailure>
  /**
   * Moves jobs (their lease, if any, is over: `leased_until` cleared); with `error`, that is
   * stored as their last error (a parked job's reason), for the attempt they were on.
   */
  readonly setRunAfter: (
    jobids: ReadonlyArray<number>,
    runAfter: number,
    error?: { readonly text: string; readonly at: number }
  ) => Effect.Effect<number, ShardFailure>
  /**
   * The rows on one of `leases` (a dispatcher's own `run_after`s) with a jobid in `[lo, hi]`:
   * which of the jobs a dispatcher holds are still on its lease, read without a write. Through the
   * `run_after` index (its entries carry the jobid), so the cost follows the rows still leased,
   * not the many already completed.
   */
  readonly onLeases: (
    leases: ReadonlyArray<number>,
    lo: number,
    hi: number
  ) => Effect.Effect<ReadonlyArray<{ readonly jobid: number; readonly runAfter: number }>, ShardFailure>
  /**
   * A dispatcher's lease extension (docs/job-life.md, "Leases held while someone holds the job"):
   * in one UPDATE, the rows among `jobids` whose `run_after` is still one of `leases` (the leases
   * that dispatcher wrote: nobody completed, rescheduled, failed, deferred or cancelled them
   * since) move to `leaseUntil` (`leased_until` too). Returns the jobids so held (a second
   * statement, only when some were not found); the others are done with.
   */
  readonly extendLeases: (
    jobids: ReadonlyArray<number>,
    leases: ReadonlyArray<number>,
    leaseUntil: number
  ) => Effect.Effect<ReadonlyArray<number>, ShardFailure>
  /**
   * A dispatcher's connection to a job server broke: in one UPDATE, the rows among `jobids` still
   * on one of `leases` and not held by a heartbeat (migration 4: `heartbeat_at >= heartbeatCutoff`)
   * become due at `now`, `leased_until` cleared (the token is kept: a copy gearmand may still hold
   * carries it, and the next claim keeps it while no heartbeat was seen). Returns how many.
   */
  readonly releaseLeases: (
    jobids: ReadonlyArray<number>,
    leases: ReadonlyArray<number>,
    now: number,
    heartbeatCutoff: number
  ) => Effect.Effect<number, ShardFailure>
  /**
   * Deletes jobs in one statement, each fenced by its token if it has one; `liveOnly`: not
   * those cancelled (a completion must not delete a job cancelled meanwhile: it is kept for
   * inspection). On a v1 table nothing is cancelled. Only when fewer rows went than were named
   * does a read find which were fenced.
   */
  readonly remove: (jobs: ReadonlyArray<HeldRow>, liveOnly: boolean) => Effect.Effect<RemoveResult, ShardFailure>
  /**
   * Moves a live job and sets its failcount (its lease, token and heartbeat are over), fenced by
   * its token if it has one.
   */
  readonly reschedule: (
    job: HeldRow,
    runAfter: number,
    failcount: number
  ) => Effect.Effect<RescheduleOutcome, ShardFailure>
  /**
   * Records a failure: one UPDATE (backoff, failcount, last error, dead when `record.dead`), of a
   * job not cancelled (a cancelled one is `missing` to it and left as it is), fenced by its token.
   */
  readonly fail: (job: HeldRow, record: FailureRecord) => Effect.Effect<FailOutcome, ShardFailure>
  /**
   * A heartbeat for jobs running here (each with its token): one UPDATE sets `heartbeat_at = now`
   * and moves their lease to `leaseUntil` (run_after and leased_until), on live rows still
   * holding their token. Only when fewer rows matched than were named does a read say which were
   * cancelled and which lost. On a table without migration 4: nothing (all `extended`: 0, none lost).
   */
  readonly heartbeat: (
    jobs: ReadonlyArray<HeldRow>,
    now: number,
    leaseUntil: number
  ) => Effect.Effect<HeartbeatResult, ShardFailure>
  /**
   * Cancels a live job (`ended IS NULL`) in one UPDATE: `ended = 'cancelled'`, `ended_at = at`,
   * `run_after` never (no claimer, ours or Perl's, takes it) and its lease cleared.
   */
  readonly cancel: (jobid: number, at: number) => Effect.Effect<ShardCancelOutcome, ShardFailure>
  /** Makes `never` jobs of a function due (not the dead: they are `never` too); returns how many. */
  readonly retryNever: (funcname: string, now: number) => Effect.Effect<number, ShardFailure>
  /** Makes dead jobs due now with failcount 0 and `ended` cleared (the last error is kept); returns how many. */
  readonly retryDead: (target: DeadTarget, now: number) => Effect.Effect<number, ShardFailure>
  /** Deletes jobs that ended so (`dead`, `cancelled`) before `before` (unix seconds); returns how many. */
  readonly purgeEnded: (
    ended: JobEnd,
    before: number,
    funcname: string | undefined
  ) => Effect.Effect<number, ShardFailure>
  readonly counts: (now: number) => Effect.Effect<ReadonlyArray<FunctionCounts>, ShardFailure>
  readonly list: (query: ShardListQuery) => Effect.Effect<ReadonlyArray<JobRecord>, ShardFailure>
  readonly get: (jobid: number) => Effect.Effect<Option.Option<JobRecord>, ShardFailure>
  /**
   * Whether the `job` table has migration 2's columns (detected once, when the shard opens): when
   * not (a v1 database), failures only back off, and nothing is dead, dispatched or has a last error.
   */
  readonly jobLife: Effect.Effect<boolean, ShardFailure>
  /**
   * Whether the `job` table has migration 4's columns (lease tokens, heartbeats; detected once,
   * when the shard opens): when not, claims write no token, completions apply by jobid alone,
   * and heartbeats write nothing.
   */
  readonly leases: Effect.Effect<boolean, ShardFailure>
  /** Flow control's tables (migration 0003). */
  readonly flow: FlowBackend
  /**
   * Whether the shard has migration 0005's columns (job priority, concurrency limits), detected
   * once when it opens; without them both are off.
   */
  readonly flowPriority: Effect.Effect<boolean, ShardFailure>
  /** How many of the function's jobs are leased now (`dispatched`: Job.jobState, not ended). */
  readonly leased: (funcname: string, now: number) => Effect.Effect<number, ShardFailure>
  /**
   * A concurrency-limited claim, in one transaction: locks the function's control row (so claims
   * of it serialize here), counts its leased jobs on this shard, adds `elsewhere` (run while the
   * lock is held: the other shards' count), and claims at most `cap` less both (and at most
   * `limit`) of its due jobs, as `claimDue` with `only`.
   */
  readonly claimCapped: (
    now: number,
    funcname: string,
    cap: number,
    limit: number,
    leaseUntil: number,
    token: string,
    maxBytes: number,
    elsewhere: Effect.Effect<number, ShardFailure>
  ) => Effect.Effect<ReadonlyArray<StoredJob>, ShardFailure>
  /**
   * Runs `body` holding the function's control-row lock on this shard (in a transaction), given
   * the count of its leased jobs here: how a claim on another shard serializes on the home shard.
   */
  readonly withFunctionLock: <A>(
    funcname: string,
    now: number,
    body: (leasedHere: number) => Effect.Effect<A, ShardFailure>
  ) => Effect.Effect<A, ShardFailure>
  /**
   * Adds to a minute's completed and failed counts (one upsert of one of its `slot` rows);
   * nothing when the table is missing (a database without migration 0006).
   */
  readonly recordThroughput: (
    minute: number,
    slot: number,
    completed: number,
    failed: number
  ) => Effect.Effect<void, ShardFailure>
  /**
   * Completed and failed per minute from `sinceMinute` on (minutes with none left out), ascending;
   * none: the table is missing. Deletes the minutes before `pruneBefore` when given.
   */
  readonly throughput: (
    sinceMinute: number,
    pruneBefore?: number
  ) => Effect.Effect<Option.Option<ReadonlyArray<MinuteCounts>>, ShardFailure>
}

/** Jobs completed and failed in one minute (`minute`: unix seconds / 60). */
export interface MinuteCounts {
  readonly minute: number
  readonly completed: number
  readonly failed: number
}

/** One shard's flow-control tables (flow.ts; docs/flow-control.md). */
export interface FlowBackend {
  /** Every function's controls (the table is tiny: only functions with something set). */
  readonly controls: Effect.Effect<ReadonlyArray<FunctionControl>, ShardFailure>
  /** Applies a patch to one function's controls; returns them as they now are (undefined: none). */
  readonly setControl: (
    funcname: string,
    patch: ControlPatch
  ) => Effect.Effect<FunctionControl | undefined, ShardFailure>
  /**
   * Atomically refills the function's bucket and takes up to `want` tokens (a negative `want`
   * gives tokens back); returns how many were taken.
   */
  readonly takeTokens: (
    funcname: string,
    rate: RateLimit,
    nowMs: number,
    want: number
  ) => Effect.Effect<number, ShardFailure>
  /** The bucket as stored (for status), none when never used. */
  readonly bucket: (funcname: string) => Effect.Effect<Option.Option<Bucket>, ShardFailure>
  readonly schedules: Effect.Effect<ReadonlyArray<ScheduleRow>, ShardFailure>
  /** Creates or replaces a schedule. */
  readonly putSchedule: (row: ScheduleRow) => Effect.Effect<void, ShardFailure>
  /** False when there was none of that name. */
  readonly removeSchedule: (name: string) => Effect.Effect<boolean, ShardFailure>
  /**
   * In one transaction: moves the schedule's next slot from `expected` to `next` (compare and
   * set) and, only if this call moved it, stores `jobs` (INSERT IGNORE: their slot keys are the
   * second guard). False when another runner moved it first (nothing stored).
   */
  readonly advanceSchedule: (
    name: string,
    expected: number,
    next: number,
    jobs: ReadonlyArray<ValidNewJob>
  ) => Effect.Effect<boolean, ShardFailure>
}
