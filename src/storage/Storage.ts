/**
 * The `Storage` service: jobs in one or more shards, and its layers (MySQL / MariaDB, SQLite,
 * memory). Validation and the insert pipeline (grouping per shard, duplicates, partial
 * batches) are written once here, over the per-shard backends; routing and cool-off are in
 * routing.ts, the batching of concurrent inserts in GroupCommit.ts, the mapping of shard
 * failures to public errors in failures.ts.
 */
import { Cause, Clock, Context, Duration, Effect, Either, Exit, Layer, MetricLabel, Option } from "effect"
import type { Scope } from "effect"
import {
  InvalidArgument,
  InvalidJob,
  PartialInsert,
  ShardUnavailable,
  SqliteDriverMissing,
  StorageUnavailable
} from "../errors.js"
import { JobLifeMissing } from "../errors.js"
import type { ConfigInvalid, InsertError, ShardInsertError, ShardOperationError } from "../errors.js"
import { validateShards } from "./targets.js"
import type { StorageConfig } from "./targets.js"
import {
  boundedError,
  FAILCOUNT_MAX,
  funcnameProblem,
  MAX_RUN_AFTER,
  nowSeconds,
  validateHandle,
  validateNewJob
} from "../Job.js"
import type { InsertOutcome, JobEnd, JobRecord, StoredJob, StoredJobId, NewJob, ValidNewJob } from "../Job.js"
import { concurrencyProblem } from "./flow.js"
import type { Bucket, ControlPatch, FunctionControl, RateLimit, ScheduleRow } from "./flow.js"
import * as Defaults from "../roles/defaults.js"
import { publicError } from "./failures.js"
import { heartbeatCutoff } from "./leases.js"
import * as GroupCommit from "./GroupCommit.js"
import * as MemoryShard from "./MemoryShard.js"
import { newLeaseToken } from "./leases.js"
import {
  completionsFenced,
  jobsClaimed,
  jobsClaimedByPriority,
  jobsCompleted,
  jobsInserted,
  jobsRetried
} from "./metrics.js"
import { makeHealth, shardForKey } from "./routing.js"
import type { ShardHealth } from "./routing.js"
import { afterCommit, ShardRejected } from "./ShardBackend.js"
import type {
  CancelOutcome,
  FailOutcome,
  FunctionCounts,
  HeartbeatResult,
  HeldRow,
  JobState,
  MinuteCounts,
  RescheduleOutcome,
  RowInsert,
  ShardBackend,
  ShardFailure,
  ShardListQuery
} from "./ShardBackend.js"
import * as MysqlShard from "./sql/mysql.js"
import * as SqliteShard from "./sql/sqlite.js"
import * as ThroughputTally from "./throughputTally.js"
import * as Tracing from "../tracing/Tracing.js"

export type {
  CancelOutcome,
  FailOutcome,
  FunctionCounts,
  HeartbeatResult,
  JobState,
  MinuteCounts,
  RescheduleOutcome
} from "./ShardBackend.js"

/**
 * A job as the one running it names it to settle it: its handle and, if it was dispatched under
 * one, its lease token (the worker JSON's `"lease"`). With a token, the statement applies only
 * while the row still holds it (docs/job-life.md, "Fenced leases").
 */
export interface HeldJobId extends StoredJobId {
  readonly lease?: string | undefined
}
export { countedJobs } from "./ShardBackend.js"
export type { Bucket, ControlPatch, FunctionControl, MissedPolicy, RateLimit, ScheduleRow } from "./flow.js"
export type { ShardHealth } from "./routing.js"

export interface ListFilter {
  readonly funcname?: string | undefined
  readonly state?: JobState | undefined
  readonly dbid?: number | undefined
  /** Only jobs whose unique key contains this text (case-sensitive). */
  readonly uniqkey?: string | undefined
  /**
   * `id` (default): by dbid, then jobid. `runAfter`: by run_after, then dbid, then jobid (the
   * cursor then needs the last job's `runAfter`). Both are keyset pages, never OFFSET scans.
   */
  readonly order?: ListOrder | undefined
  /** Page size (default 100, at most 10,000). */
  readonly limit?: number | undefined
  /** Continue after this job (the last one of the previous page). */
  readonly after?: ListCursor | undefined
}

export type ListOrder = "id" | "runAfter"

/** Where a page ends: a job's handle, and its `runAfter` when listing by run_after. */
export interface ListCursor extends StoredJobId {
  readonly runAfter?: number | undefined
}

/** A failure to record (see `StorageShape.fail`). */
export interface Failure {
  /** Failures so far, this one included (the attempts made). */
  readonly failcount: number
  /** When the job runs again if its attempts are not used up. */
  readonly runAfter: number
  /** What went wrong (stored bounded, with its time and attempt); absent: the last error is kept. */
  readonly error?: string | undefined
  /** Its attempts are used up: the job becomes dead (on a v1 database it only backs off). */
  readonly dead: boolean
}

/** Which jobs of which shards (absent: all). */
export interface Selection {
  readonly funcname?: string | undefined
  readonly dbid?: number | undefined
}

/** A lease a dispatcher wrote and holds: the job, and the `run_after` it wrote. */
export interface HeldLease {
  readonly jobid: number
  readonly lease: number
}

/** The distinct leases of `held` (a dispatcher holds few: one per batch or extension). */
const leasesOf = (held: ReadonlyArray<HeldLease>): ReadonlyArray<number> => [...new Set(held.map((h) => h.lease))]
/** The distinct jobs of `held` (a job may come with two candidate leases). */
const jobidsOf = (held: ReadonlyArray<HeldLease>): ReadonlyArray<number> => [...new Set(held.map((h) => h.jobid))]
/** Jobs (or distinct leases) per lease statement: far below a prepared statement's 65,535 placeholders. */
const LEASES_CHUNK = 1000
const chunksOf = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

export interface StorageShape {
  /** The configured shard ids, ascending. */
  readonly shardIds: ReadonlyArray<number>
  /**
   * Stores jobs: one round trip per shard involved (large batches are chunked). Returns, per
   * job and in order, its handle and whether it was dropped as a duplicate of an existing
   * `(funcname, uniqkey)` (the handle is then the existing job's).
   */
  readonly insert: (jobs: ReadonlyArray<NewJob>) => Effect.Effect<ReadonlyArray<InsertOutcome>, InsertError>
  /**
   * Claims up to `limit` due jobs of one shard, oldest first, leasing them until now + `lease`
   * (their `run_after` moves there). Concurrent claimers get disjoint jobs without waiting.
   * Jobs of the functions in `exclude` are left alone (the QueueRunner's watermark). The jobs'
   * args total at most `maxBytes` (default 64 MiB), except that one job is always taken. With
   * `only`, jobs of that function alone (a rate-limited function's claim).
   */
  readonly claimDue: (
    dbid: number,
    limit: number,
    lease: Duration.DurationInput,
    exclude?: ReadonlyArray<string>,
    maxBytes?: number,
    only?: string
  ) => Effect.Effect<ReadonlyArray<StoredJob>, ShardOperationError>
  /**
   * Moves jobs' `run_after` to `until` (unix seconds), ending their lease; with `error`, that is
   * stored (bounded) as their last error (a parked job's reason). Returns how many rows changed.
   */
  readonly defer: (
    handles: ReadonlyArray<StoredJobId>,
    until: number,
    error?: string
  ) => Effect.Effect<number, ShardOperationError>
  /**
   * Which of the jobs a dispatcher holds on one shard are still on the lease it wrote (nobody
   * completed, rescheduled, failed, cancelled or leased them again): one read, no write, whose
   * cost follows the rows still leased (the dispatcher's cheap, frequent pruning).
   */
  readonly leasesHeld: (
    dbid: number,
    held: ReadonlyArray<HeldLease>
  ) => Effect.Effect<ReadonlyArray<number>, ShardOperationError>
  /**
   * Extends, on one shard, the leases a dispatcher holds for jobs it handed to a job server whose
   * connection is unbroken: each job still on the lease it wrote (`HeldLease.lease`) is leased
   * until `leaseUntil`, one UPDATE per 1,000 jobs. Returns the jobids still held (the others are done with:
   * completed, rescheduled, failed, cancelled, or leased again by someone else).
   */
  readonly extendLeases: (
    dbid: number,
    held: ReadonlyArray<HeldLease>,
    leaseUntil: number
  ) => Effect.Effect<ReadonlyArray<number>, ShardOperationError>
  /**
   * Frees, on one shard, jobs a dispatcher handed to a job server whose connection broke: each
   * job still on the lease it wrote and not held by a heartbeat (one within `leaseSeconds` of
   * `now`, with migration 4) is due at `now`, its lease dropped (its token kept), one UPDATE per
   * 1,000 jobs.
   * Returns how many.
   */
  readonly releaseLeases: (
    dbid: number,
    held: ReadonlyArray<HeldLease>,
    now: number,
    leaseSeconds: number
  ) => Effect.Effect<number, ShardOperationError>
  /**
   * Deletes finished jobs (one statement per shard), not those cancelled meanwhile (a job
   * cancelled while it ran is kept as cancelled), nor those whose lease token no longer holds
   * (fenced: logged and counted in `garivini_completions_fenced_total`). Returns how many were
   * deleted.
   */
  readonly complete: (handles: ReadonlyArray<HeldJobId>) => Effect.Effect<number, ShardOperationError>
  /** Deletes jobs whatever their state (an operator's `jobs delete`). Returns how many. */
  readonly remove: (handles: ReadonlyArray<StoredJobId>) => Effect.Effect<number, ShardOperationError>
  /**
   * Sets one live job's `run_after` and `failcount` (its lease is over). `missing` when the job
   * no longer exists or was cancelled; `fenced` when its lease token no longer holds (counted).
   */
  readonly reschedule: (
    handle: HeldJobId,
    runAfter: number,
    failcount: number
  ) => Effect.Effect<RescheduleOutcome, ShardOperationError>
  /**
   * Records a failure of a job in one statement: its failcount, its backoff and (bounded to
   * 2,000 characters) its last error with time and attempt; dead (`run_after` never) when
   * `failure.dead`. Says whether the job was there, backs off or is dead now.
   */
  readonly fail: (handle: HeldJobId, failure: Failure) => Effect.Effect<FailOutcome, ShardOperationError>
  /**
   * A heartbeat of jobs running on shard `dbid` (those with a lease token; others are skipped):
   * one UPDATE moves their lease to now + `lease` and records the heartbeat. Says which were not
   * extended: cancelled (to be interrupted) or lost (completed, deleted or leased again elsewhere).
   */
  readonly heartbeat: (
    dbid: number,
    jobs: ReadonlyArray<HeldJobId>,
    lease: Duration.DurationInput
  ) => Effect.Effect<HeartbeatResult, ShardOperationError>
  /**
   * Cancels a job that has not ended, in one statement: it ends as `cancelled` (kept for
   * inspection, `jobs purge --cancelled` removes it) and no claimer takes it again. It does not
   * stop a job already in a job server or a worker (see jobActions.ts). Fails with
   * `JobLifeMissing` on a v1 table.
   */
  readonly cancel: (handle: StoredJobId) => Effect.Effect<CancelOutcome, ShardOperationError | JobLifeMissing>
  /** Makes every `never` job of a function due now, on one shard or all (not the dead ones). */
  readonly retryNever: (funcname: string, dbid?: number) => Effect.Effect<number, ShardOperationError>
  /**
   * Makes dead jobs due now with failcount 0 (their last error kept): one job, or those of a
   * function and shard (absent: all). Returns how many.
   */
  readonly retryDead: (target: StoredJobId | Selection) => Effect.Effect<number, ShardOperationError>
  /** Deletes jobs that ended so (`dead`, `cancelled`) longer than `olderThan` ago. Returns how many. */
  readonly purgeEnded: (
    ended: JobEnd,
    olderThan: Duration.DurationInput,
    selection?: Selection
  ) => Effect.Effect<number, ShardOperationError>
  /** Counts per shard and function of the jobs in each state, and the oldest due. */
  readonly counts: (dbid?: number) => Effect.Effect<ReadonlyArray<FunctionCounts>, ShardOperationError>
  /** Lists jobs (with their life columns) by dbid then jobid, filtered, one page at a time. */
  readonly list: (filter?: ListFilter) => Effect.Effect<ReadonlyArray<JobRecord>, ShardOperationError>
  readonly get: (handle: StoredJobId) => Effect.Effect<Option.Option<JobRecord>, ShardOperationError>
  /**
   * Whether a shard's `job` table has migration 2's columns (dead jobs, last errors, the
   * dispatched state); a v1 table runs without them.
   */
  readonly jobLife: (dbid: number) => Effect.Effect<boolean, ShardOperationError>
  /**
   * Whether a shard's `job` table has migration 4's columns (lease tokens, heartbeats); without
   * them completions are not fenced and nothing heartbeats there.
   */
  readonly leases: (dbid: number) => Effect.Effect<boolean, ShardOperationError>
  /** Which shards are currently avoided after a failure. */
  readonly health: Effect.Effect<ReadonlyArray<ShardHealth>>
  /** Flow control (docs/flow-control.md). */
  readonly flow: FlowShape
  /**
   * Jobs completed and failed per minute over the last `minutes` minutes (the current one
   * included), summed over every shard that answered, one entry per minute, oldest first: every
   * process's `complete` and `fail` count there (migration 0006). Also drops minutes older than a
   * day (at most every 10 minutes per process). Shards without the table, or down, are named.
   */
  readonly throughput: (minutes: number) => Effect.Effect<Throughput>
}

export interface Throughput {
  /** One per minute, oldest first, the current (partial) minute last. */
  readonly minutes: ReadonlyArray<MinuteCounts>
  /** Shards without migration 0006's table. */
  readonly missing: ReadonlyArray<number>
  /** Shards that did not answer. */
  readonly unavailable: ReadonlyArray<{ readonly shard: number; readonly error: string }>
}

/**
 * Flow control's storage. Controls are written to every shard (each dispatcher reads them from
 * the shard it claims from); rate-limit buckets and schedules live on the lowest shard (`home`),
 * so one bucket per function holds for the whole deployment and a slot is advanced in one place.
 */
export interface FlowShape {
  /** The shard holding buckets and schedules: the lowest dbid. */
  readonly home: number
  /** One shard's controls. */
  readonly controls: (dbid: number) => Effect.Effect<ReadonlyArray<FunctionControl>, ShardOperationError>
  /**
   * Applies a patch on every shard (each tried, so one down does not keep the others unchanged);
   * fails with the first shard's error, after the others were written. Returns the new controls.
   */
  readonly setControl: (
    funcname: string,
    patch: ControlPatch
  ) => Effect.Effect<FunctionControl | undefined, ShardOperationError>
  /**
   * A concurrency-limited function's claim on shard `dbid`: at most `limit` of its due jobs, and
   * no more than leaves `cap` of them leased at once across every shard. Claims of the function
   * serialize on its control row on the home shard, and count the leased rows while holding it.
   */
  readonly claimCapped: (
    dbid: number,
    funcname: string,
    cap: number,
    limit: number,
    lease: Duration.DurationInput,
    maxBytes?: number
  ) => Effect.Effect<ReadonlyArray<StoredJob>, ShardOperationError>
  /** How many of the function's jobs are leased now, over every shard (for status). */
  readonly leased: (funcname: string) => Effect.Effect<number, ShardOperationError>
  /** Takes up to `want` tokens of the function's bucket (negative: gives back); returns how many. */
  readonly takeTokens: (funcname: string, rate: RateLimit, want: number) => Effect.Effect<number, ShardOperationError>
  readonly bucket: (funcname: string) => Effect.Effect<Option.Option<Bucket>, ShardOperationError>
  readonly schedules: Effect.Effect<ReadonlyArray<ScheduleRow>, ShardOperationError>
  readonly putSchedule: (row: ScheduleRow) => Effect.Effect<void, ShardOperationError>
  readonly removeSchedule: (name: string) => Effect.Effect<boolean, ShardOperationError>
  /** Compare-and-set of the next slot, storing `jobs` (on the home shard) only if this call moved it. */
  readonly advanceSchedule: (
    name: string,
    expected: number,
    next: number,
    jobs: ReadonlyArray<NewJob>
  ) => Effect.Effect<boolean, ShardOperationError>
}

export class Storage extends Context.Tag("garivini/Storage")<Storage, StorageShape>() {}

export interface StorageOptions {
  /** How long a failing shard is avoided for new non-unique jobs (default 30 s). */
  readonly coolOff?: Duration.DurationInput | undefined
  /**
   * Merge concurrent `insert` calls into batches, one batcher per shard (one statement a batch)
   * while that shard's previous batch is in flight. Each call still gets its own outcomes and
   * errors, as soon as its own shards answered. Default off in `make`; the MySQL layer turns it
   * on (it multiplies the rate of many concurrent single inserts). A call interrupted while its
   * batch is in flight may still have its jobs stored; one interrupted before its batch starts
   * is withdrawn.
   */
  readonly coalesceInserts?: boolean | undefined
  /** A test hook: called with the number of waiting calls each time a call joins them. */
  readonly onInsertQueued?: ((waiting: number) => void) | undefined
  /** How often completed/failed counts per minute are written (default `Defaults.storage.throughputFlush`). */
  readonly throughputFlush?: Duration.DurationInput | undefined
}

/** Minutes of `garivini_throughput` kept (older ones are dropped when it is read). */
const THROUGHPUT_KEEP_MINUTES = 24 * 60
/** Minutes between two prunes by one process's reader. */
const THROUGHPUT_PRUNE_EVERY = 10
const PRIORITY_LABELS = {
  high: [MetricLabel.make("priority", "high")],
  normal: [MetricLabel.make("priority", "normal")],
  low: [MetricLabel.make("priority", "low")]
} as const

/** Counts claimed jobs, in all and by priority (one pass, no Effect step: the claim's hot path). */
const countClaimed = (claimed: ReadonlyArray<StoredJob>) => {
  jobsClaimed.unsafeUpdate(claimed.length, [])
  let high = 0
  let low = 0
  for (const job of claimed) {
    if (job.priority === "high") high++
    else if (job.priority === "low") low++
  }
  const normal = claimed.length - high - low
  if (normal > 0) jobsClaimedByPriority.unsafeUpdate(normal, PRIORITY_LABELS.normal)
  if (high > 0) jobsClaimedByPriority.unsafeUpdate(high, PRIORITY_LABELS.high)
  if (low > 0) jobsClaimedByPriority.unsafeUpdate(low, PRIORITY_LABELS.low)
}

/** Calls merged into one coalesced batch, at most. */
const COALESCE_MAX_CALLS = 512

/** Most jobs one claim may take (QueueRunner's batchMaxSize is checked against it at start). */
export const MAX_CLAIM = 100_000
/** Bytes of args one claim takes unless told otherwise (at least one job is always taken). */
export const DEFAULT_CLAIM_BYTES = Defaults.queueRunner.batchMaxBytes
const MAX_PAGE = 10_000
/** Attempts to settle a duplicate whose existing row was deleted between insert and lookup. */
const DUPLICATE_SETTLE_ATTEMPTS = 3

const checkRunAfter = (t: number) =>
  Number.isSafeInteger(t) && t >= 0 && t <= MAX_RUN_AFTER
    ? Effect.void
    : Effect.fail(new InvalidJob({ reason: `run_after ${t} is not a unix time in [0, ${MAX_RUN_AFTER}]` }))
const checkFailcount = (n: number) =>
  Number.isSafeInteger(n) && n >= 0 && n <= FAILCOUNT_MAX
    ? Effect.void
    : Effect.fail(new InvalidJob({ reason: `failcount ${n} is not an integer in [0, ${FAILCOUNT_MAX}]` }))

/** Counts the jobs an insert stored (duplicates dropped are not new jobs); once per call. */
const countInserted = (outcomes: ReadonlyArray<InsertOutcome>): ReadonlyArray<InsertOutcome> => {
  let stored = 0
  for (const o of outcomes) if (!o.duplicate) stored++
  jobsInserted.unsafeUpdate(stored, [])
  return outcomes
}

/** Builds the service over per-shard backends (the live and memory layers both use this). */
export const make = (
  backends: ReadonlyArray<ShardBackend>,
  options: StorageOptions = {}
): Effect.Effect<StorageShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const sorted = [...backends].sort((a, b) => a.dbid - b.dbid)
    const byId = new Map(sorted.map((b) => [b.dbid, b] as const))
    const shardIds = sorted.map((b) => b.dbid)
    const shardHealth = yield* makeHealth(shardIds, options.coolOff ?? Defaults.storage.coolOff)
    const onShard = <A, E extends { readonly _tag: string }>(
      backend: ShardBackend,
      run: (b: ShardBackend) => Effect.Effect<A, E>
    ) => shardHealth.tracked(backend.dbid, run(backend))

    const backendFor = (dbid: number): Effect.Effect<ShardBackend, InvalidArgument> => {
      const backend = byId.get(dbid)
      return backend === undefined
        ? Effect.fail(
          new InvalidArgument({
            argument: "dbid",
            reason: `${dbid} is not a configured shard (${shardIds.join(", ")})`
          })
        )
        : Effect.succeed(backend)
    }

    /** Runs `op` on one shard, mapping failures to the public errors. */
    const shardOp = <A>(dbid: number, operation: string, run: (b: ShardBackend) => Effect.Effect<A, ShardFailure>) =>
      Effect.flatMap(
        backendFor(dbid),
        (backend) => onShard(backend, run).pipe(Effect.mapError((failure) => publicError(dbid, operation, failure)))
      )

    /** Groups handles per shard (validating them), runs `op` on each, sums the counts. */
    const perShardHandles = (
      handles: ReadonlyArray<HeldJobId>,
      operation: string,
      run: (b: ShardBackend, jobs: ReadonlyArray<HeldRow>) => Effect.Effect<number, ShardFailure>
    ): Effect.Effect<number, ShardOperationError> =>
      Effect.gen(function*() {
        // Checked without an Effect step per handle: a worker's DELETE batch holds thousands.
        const groups = new Map<number, Array<HeldRow>>()
        for (const h of handles) {
          const valid = validateHandle(h)
          if (Either.isLeft(valid)) return yield* Effect.fail(valid.left)
          const row: HeldRow = h.lease === undefined
            ? { jobid: valid.right.jobid }
            : { jobid: valid.right.jobid, lease: h.lease }
          const rows = groups.get(valid.right.dbid)
          if (rows !== undefined) rows.push(row)
          else {
            yield* backendFor(valid.right.dbid)
            groups.set(valid.right.dbid, [row])
          }
        }
        return yield* sumAll([...groups].map(([dbid, ids]) => shardOp(dbid, operation, (b) => run(b, ids))))
      })

    /** Runs every effect (none is cut short by another's failure); sums or fails with the first error. */
    const sumAll = <E>(effects: ReadonlyArray<Effect.Effect<number, E>>): Effect.Effect<number, E> =>
      // One shard (the common case): no fibers to fork and join.
      effects.length === 1 ? effects[0]! : Effect.all(effects, { concurrency: "unbounded", mode: "either" }).pipe(
        Effect.flatMap((results) => {
          let total = 0
          for (const r of results) {
            if (Either.isLeft(r)) return Effect.fail(r.left)
            total += r.right
          }
          return Effect.succeed(total)
        })
      )

    const collectAll = <A, E>(effects: ReadonlyArray<Effect.Effect<ReadonlyArray<A>, E>>) =>
      Effect.all(effects, { concurrency: "unbounded" }).pipe(Effect.map((parts) => parts.flat()))

    const shardsOrOne = (dbid: number | undefined) =>
      dbid === undefined ? Effect.succeed(sorted) : Effect.map(backendFor(dbid), (b) => [b])

    // -- insert ----------------------------------------------------------------------------

    /** Inserts a group on one shard; duplicates whose row vanished meanwhile are tried again. */
    const insertOnShard = (
      backend: ShardBackend,
      rows: ReadonlyArray<ValidNewJob>
    ): Effect.Effect<ReadonlyArray<RowInsert>, ShardFailure | InvalidJob> =>
      Effect.gen(function*() {
        const maxArg = yield* backend.maxArgBytes
        const tooBig = rows.find((r) => r.arg.length > maxArg)
        if (tooBig !== undefined) {
          return yield* Effect.fail(
            new InvalidJob({
              reason:
                `arg is ${tooBig.arg.length} bytes, more than shard ${backend.dbid} accepts in one statement (${maxArg}; raise its max_allowed_packet)`
            })
          )
        }
        const results: Array<RowInsert> = [...(yield* backend.insert(rows))]
        if (!results.some((r) => r._tag === "Duplicate" && r.existing === null)) return results
        // The first insert may have stored rows: a failure settling the others must not say "not stored".
        return yield* settleDuplicates(backend, rows, results).pipe(
          Effect.mapError(
            afterCommit(
              results.some((r) => r._tag === "Inserted"),
              "inserting a duplicate whose job was deleted meanwhile"
            )
          )
        )
      })

    /** Inserts again the rows whose existing job vanished between their insert and its lookup. */
    const settleDuplicates = (backend: ShardBackend, rows: ReadonlyArray<ValidNewJob>, results: Array<RowInsert>) =>
      Effect.gen(function*() {
        for (let attempt = 1; attempt < DUPLICATE_SETTLE_ATTEMPTS; attempt++) {
          const unsettled = results.flatMap((r, i) => r._tag === "Duplicate" && r.existing === null ? [i] : [])
          if (unsettled.length === 0) break
          const again = yield* backend.insert(unsettled.map((i) => rows[i]!))
          unsettled.forEach((i, k) => (results[i] = again[k]!))
        }
        if (results.some((r) => r._tag === "Duplicate" && r.existing === null)) {
          return yield* Effect.fail(
            new ShardRejected({
              reason: "a unique key kept colliding with a job deleted at the same moment; not stored"
            })
          )
        }
        return results
      })

    /** Stores rows on one shard as one statement group, tracking its health, in a span. */
    const storeOnShard = (backend: ShardBackend, rows: ReadonlyArray<ValidNewJob>, calls: number) =>
      onShard(backend, (b) => insertOnShard(b, rows)).pipe(
        // No stack trace: capturing one per group is measurable on the hot path.
        Effect.withSpan("Storage.insert", {
          attributes: { dbid: backend.dbid, jobs: rows.length, calls },
          captureStackTrace: false
        })
      )

    /** How a group of rows reaches its shard: at once, or in that shard's next coalesced batch. */
    type Send = (
      backend: ShardBackend,
      rows: ReadonlyArray<ValidNewJob>
    ) => Effect.Effect<ReadonlyArray<RowInsert>, ShardFailure | InvalidJob>

    const insertError =
      (dbid: number, count: number) => (failure: ShardFailure | InvalidJob): ShardInsertError | InvalidJob =>
        failure._tag === "InvalidJob" ? failure : publicError(dbid, "insert", failure, count)

    const toOutcomes = (dbid: number, results: ReadonlyArray<RowInsert>): ReadonlyArray<InsertOutcome> =>
      results.map((r) =>
        r._tag === "Inserted"
          ? { handle: { dbid, jobid: r.jobid }, duplicate: false }
          : { handle: { dbid, jobid: r.existing! }, duplicate: true }
      )

    /** A unique job's shard is fixed by its key: a failure there is final. */
    const insertPinned = (send: Send, backend: ShardBackend, rows: ReadonlyArray<ValidNewJob>) =>
      send(backend, rows).pipe(
        Effect.map((results) => toOutcomes(backend.dbid, results)),
        Effect.mapError(insertError(backend.dbid, rows.length))
      )

    /**
     * Jobs without a unique key go to a random live shard; a shard that cannot be reached is
     * avoided and the next one tried. Anything that may have reached a server is not retried.
     */
    const insertFloating = (send: Send, rows: ReadonlyArray<ValidNewJob>) =>
      Effect.gen(function*() {
        const reasons: Array<string> = []
        for (const backend of yield* shardHealth.insertOrder(sorted)) {
          const attempt = yield* Effect.either(send(backend, rows))
          if (Either.isRight(attempt)) return toOutcomes(backend.dbid, attempt.right)
          if (attempt.left._tag !== "ShardUnreached") {
            return yield* Effect.fail(insertError(backend.dbid, rows.length)(attempt.left))
          }
          reasons.push(`shard ${backend.dbid}: ${attempt.left.reason}`)
        }
        return yield* Effect.fail(
          new StorageUnavailable({ reason: `no shard could be reached (${reasons.join("; ")})` })
        )
      })

    /**
     * Stores one call's validated jobs: grouped by shard, the groups sent at once. The call
     * waits for its own groups only, never for another shard's statement.
     */
    const insertValid = (
      send: Send,
      valid: ReadonlyArray<ValidNewJob>
    ): Effect.Effect<ReadonlyArray<InsertOutcome>, InsertError> =>
      Effect.gen(function*() {
        // No unique key in the call (the common case): one floating group, nothing to regroup.
        if (valid.every((job) => job.uniqkey === null)) return yield* insertFloating(send, valid)
        // Group by target: the key's shard for unique jobs, "floating" for the rest.
        const pinned = new Map<number, Array<number>>()
        const floating: Array<number> = []
        valid.forEach((job, i) => {
          if (job.uniqkey === null) return floating.push(i)
          const dbid = shardForKey(job.uniqkey, shardIds)
          const group = pinned.get(dbid) ?? []
          group.push(i)
          pinned.set(dbid, group)
        })
        const groups: Array<{
          readonly indices: ReadonlyArray<number>
          readonly run: Effect.Effect<ReadonlyArray<InsertOutcome>, ShardInsertError | InvalidJob>
        }> = [...pinned].map(([dbid, indices]) => ({
          indices,
          run: insertPinned(send, byId.get(dbid)!, indices.map((i) => valid[i]!))
        }))
        if (floating.length > 0) {
          groups.push({ indices: floating, run: insertFloating(send, floating.map((i) => valid[i]!)) })
        }

        // One group (the common case): no fibers to fork and join.
        if (groups.length === 1) return yield* groups[0]!.run
        const results = yield* Effect.all(groups.map((g) => Effect.either(g.run)), { concurrency: "unbounded" })
        const outcomes: Array<InsertOutcome | undefined> = new Array(valid.length).fill(undefined)
        const failures: Array<{ indices: ReadonlyArray<number>; error: ShardInsertError | InvalidJob }> = []
        results.forEach((r, g) => {
          const indices = groups[g]!.indices
          if (Either.isRight(r)) indices.forEach((i, k) => (outcomes[i] = r.right[k]))
          else failures.push({ indices, error: r.left })
        })
        if (failures.length > 0) return yield* Effect.fail(new PartialInsert({ outcomes, failures }))
        return outcomes.filter((o): o is InsertOutcome => o !== undefined)
      })

    /** Without coalescing: each call's groups go to their shards themselves. */
    const direct: Send = (backend, rows) => storeOnShard(backend, rows, 1)

    /** One call's rows waiting for their shard's next batch, resumed through their own callback. */
    interface PendingRows {
      readonly rows: ReadonlyArray<ValidNewJob>
      readonly resume: (result: Effect.Effect<ReadonlyArray<RowInsert>, ShardFailure | InvalidJob>) => void
    }

    /** Runs one shard's batch and resumes each of its callers with the results of its own rows. */
    const runBatch = (backend: ShardBackend) => (calls: ReadonlyArray<PendingRows>): Effect.Effect<void> =>
      Effect.flatMap(
        Effect.exit(
          storeOnShard(backend, calls.length === 1 ? calls[0]!.rows : calls.flatMap((c) => c.rows), calls.length)
        ),
        (exit): Effect.Effect<void> => {
          if (Exit.isSuccess(exit)) {
            let offset = 0
            for (const call of calls) {
              const n = call.rows.length
              call.resume(Effect.succeed(calls.length === 1 ? exit.value : exit.value.slice(offset, offset + n)))
              offset += n
            }
            return Effect.void
          }
          const failure = Cause.failureOption(exit.cause)
          if (Option.isSome(failure) && failure.value._tag === "InvalidJob" && calls.length > 1) {
            // One call's arg does not fit the shard (refused before any statement): try each call
            // alone, so only that one fails.
            return Effect.forEach(
              calls,
              (c) => Effect.map(Effect.exit(storeOnShard(backend, c.rows, 1)), (exit) => c.resume(exit)),
              { discard: true }
            )
          }
          // The shard's failure, or a defect: every caller of the batch gets it (none may wait forever).
          for (const call of calls) call.resume(Effect.failCause(exit.cause))
          return Effect.void
        }
      )

    // Group commit, one batcher per shard: while a shard's batch is in flight, the next calls for
    // that shard gather and go together, and a stalled shard holds up only its own callers.
    const batchers = options.coalesceInserts === true
      ? new Map(
        yield* Effect.forEach(sorted, (backend) =>
          Effect.map(
            GroupCommit.make({
              run: runBatch(backend),
              maxBatch: COALESCE_MAX_CALLS,
              onQueued: options.onInsertQueued
            }),
            (batcher) => [backend.dbid, batcher] as const
          ))
      )
      : undefined

    /** Hands rows to their shard's batcher; a caller interrupted before its batch starts is withdrawn. */
    const coalesced = (batchers: ReadonlyMap<number, GroupCommit.GroupCommit<PendingRows>>): Send => (backend, rows) =>
      Effect.async((resume) => {
        const batcher = batchers.get(backend.dbid)!
        const call: PendingRows = { rows, resume }
        batcher.unsafeOffer(call)
        return Effect.sync(() => void batcher.withdraw(call))
      })

    const send = batchers === undefined ? direct : coalesced(batchers)

    /**
     * Validation is synchronous and a call is a handful of Effect steps: this is the hot path of
     * many concurrent single inserts. The `Storage.insert` span is per statement group: per
     * shard and call without coalescing, per shard batch with it (a span per call cost about
     * 12 µs, a third of the CPU of a coalesced call).
     */
    const insertUntraced = (jobs: ReadonlyArray<NewJob>): Effect.Effect<ReadonlyArray<InsertOutcome>, InsertError> =>
      Effect.suspend((): Effect.Effect<ReadonlyArray<InsertOutcome>, InsertError> => {
        if (jobs.length === 0) return Effect.succeed([])
        const valid: Array<ValidNewJob> = []
        for (let i = 0; i < jobs.length; i++) {
          const v = validateNewJob(jobs[i]!, jobs.length === 1 ? undefined : i)
          if (Either.isLeft(v)) return Effect.fail(v.left)
          valid.push(v.right)
        }
        return Effect.map(insertValid(send, valid), countInserted)
      })
    // Decided once: with tracing off, inserts take no tracing step at all.
    const insert = (yield* Tracing.isEnabled)
      ? (jobs: ReadonlyArray<NewJob>) => Tracing.tracedInsert(jobs, insertUntraced)
      : insertUntraced

    // -- the rest --------------------------------------------------------------------------

    const claimDue = (
      dbid: number,
      limit: number,
      lease: Duration.DurationInput,
      exclude: ReadonlyArray<string> = [],
      maxBytes: number = DEFAULT_CLAIM_BYTES,
      only?: string
    ) =>
      Effect.gen(function*() {
        if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_CLAIM) {
          return yield* Effect.fail(
            new InvalidArgument({ argument: "claim limit", reason: `${limit} is not an integer in [1, ${MAX_CLAIM}]` })
          )
        }
        if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
          return yield* Effect.fail(
            new InvalidArgument({ argument: "claim byte budget", reason: `${maxBytes} is not a non-negative integer` })
          )
        }
        const now = yield* nowSeconds
        const leaseSeconds = Math.ceil(Duration.toSeconds(Duration.decode(lease)))
        const token = yield* newLeaseToken
        const claimed = yield* shardOp(
          dbid,
          "claimDue",
          (b) => b.claimDue(now, limit, now + leaseSeconds, token, exclude, maxBytes, only)
        )
        countClaimed(claimed)
        return claimed
      }).pipe(Effect.withSpan("Storage.claimDue", { attributes: { dbid, limit } }))

    const defer = (handles: ReadonlyArray<StoredJobId>, until: number, error?: string) =>
      Effect.zipRight(
        checkRunAfter(until),
        error === undefined
          ? perShardHandles(handles, "defer", (b, jobs) => b.setRunAfter(jobids(jobs), until))
          : Effect.flatMap(nowSeconds, (at) => {
            const note = { text: boundedError(error), at }
            return perShardHandles(handles, "defer", (b, jobs) => b.setRunAfter(jobids(jobs), until, note))
          })
      )

    /** Counts completions or failures in the shard's minute, written in the background (the chart). */
    const tally = yield* ThroughputTally.make(options.throughputFlush ?? Defaults.storage.throughputFlush)
    const countMinute = (b: ShardBackend, completed: number, failed: number) =>
      Effect.map(nowSeconds, (now) => tally.add(b, now, completed, failed))

    /** Logs and counts completions that changed nothing because the job was leased again since. */
    const reportFenced = (b: ShardBackend, fenced: ReadonlyArray<number>) =>
      fenced.length === 0 ? Effect.void : Effect.logWarning(
        `completion of ${fenced.length} job(s) changed nothing: leased again since (fenced): ${
          fenced.slice(0, 20).map((jobid) => `${b.dbid}:${jobid}`).join(", ")
        }`
      ).pipe(Effect.zipLeft(Effect.sync(() => completionsFenced.unsafeUpdate(fenced.length, []))))
    const leasesHeld = (dbid: number, held: ReadonlyArray<HeldLease>) =>
      held.length === 0 ? Effect.succeed([]) : Effect.gen(function*() {
        const wanted = new Map<number, Set<number>>()
        let lo = Number.MAX_SAFE_INTEGER
        let hi = 0
        for (const h of held) {
          const leases = wanted.get(h.jobid)
          if (leases === undefined) wanted.set(h.jobid, new Set([h.lease]))
          else leases.add(h.lease)
          if (h.jobid < lo) lo = h.jobid
          if (h.jobid > hi) hi = h.jobid
        }
        const found: Array<number> = []
        for (const leases of chunksOf(leasesOf(held), LEASES_CHUNK)) {
          const rows = yield* shardOp(dbid, "leasesHeld", (b) => b.onLeases(leases, lo, hi))
          for (const row of rows) if (wanted.get(row.jobid)?.has(row.runAfter) === true) found.push(row.jobid)
        }
        return found
      })

    /** `held` cut into parts of at most LEASES_CHUNK jobs (a job's candidate leases stay together). */
    const heldChunks = (held: ReadonlyArray<HeldLease>): Array<ReadonlyArray<HeldLease>> => {
      const byJob = new Map<number, Array<HeldLease>>()
      for (const h of held) {
        const group = byJob.get(h.jobid)
        if (group === undefined) byJob.set(h.jobid, [h])
        else group.push(h)
      }
      return chunksOf([...byJob.values()], LEASES_CHUNK).map((groups) => groups.flat())
    }

    // In parts: one statement naming every held job would pass the 65,535 placeholders a MySQL
    // prepared statement allows, and hold its row locks the longer.
    const extendLeases = (dbid: number, held: ReadonlyArray<HeldLease>, leaseUntil: number) =>
      Effect.zipRight(
        checkRunAfter(leaseUntil),
        Effect.map(
          Effect.forEach(
            heldChunks(held),
            (part) => shardOp(dbid, "extendLeases", (b) => b.extendLeases(jobidsOf(part), leasesOf(part), leaseUntil))
          ),
          (parts) => parts.flat()
        )
      )

    const releaseLeases = (dbid: number, held: ReadonlyArray<HeldLease>, now: number, leaseSeconds: number) =>
      Effect.map(
        Effect.forEach(heldChunks(held), (part) =>
          shardOp(
            dbid,
            "releaseLeases",
            (b) => b.releaseLeases(jobidsOf(part), leasesOf(part), now, heartbeatCutoff(now, leaseSeconds))
          )),
        (counts) => counts.reduce((a, b) => a + b, 0)
      )

    const complete = (handles: ReadonlyArray<HeldJobId>) =>
      Effect.map(
        perShardHandles(handles, "complete", (b, jobs) =>
          Effect.flatMap(b.remove(jobs, true), ({ deleted, fenced }) =>
            Effect.as(
              Effect.zipRight(deleted > 0 ? countMinute(b, deleted, 0) : Effect.void, reportFenced(b, fenced)),
              deleted
            ))),
        (deleted) => {
          jobsCompleted.unsafeUpdate(deleted, [])
          return deleted
        }
      )

    const remove = (handles: ReadonlyArray<StoredJobId>) =>
      perShardHandles(
        handles.map((h) => ({ dbid: h.dbid, jobid: h.jobid })),
        "delete",
        (b, jobs) => Effect.map(b.remove(jobs, false), (r) => r.deleted)
      )

    /** A settling statement that changed nothing because the lease passed on: said and counted once here. */
    const fenced = (h: HeldJobId, what: string) =>
      Effect.zipRight(
        Effect.sync(() => completionsFenced.unsafeUpdate(1, [])),
        Effect.logWarning(`${what} of job ${h.dbid}:${h.jobid} changed nothing: leased again since (fenced)`)
      )

    const reschedule = (handle: HeldJobId, runAfter: number, failcount: number) =>
      Effect.gen(function*() {
        const h = yield* validateHandle(handle)
        yield* checkRunAfter(runAfter)
        yield* checkFailcount(failcount)
        const outcome = yield* shardOp(
          h.dbid,
          "reschedule",
          (b) => b.reschedule(heldRow(h.jobid, handle.lease), runAfter, failcount)
        )
        if (outcome === "rescheduled") jobsRetried.unsafeUpdate(1, [])
        if (outcome === "fenced") yield* fenced(handle, "reschedule")
        return outcome
      })

    const heartbeat = (dbid: number, jobs: ReadonlyArray<HeldJobId>, lease: Duration.DurationInput) =>
      Effect.gen(function*() {
        const rows: Array<HeldRow> = []
        for (const job of jobs) {
          const h = yield* validateHandle(job)
          if (h.dbid === dbid && job.lease !== undefined) rows.push({ jobid: h.jobid, lease: job.lease })
        }
        if (rows.length === 0) return { extended: 0, cancelled: [], lost: [] }
        const now = yield* nowSeconds
        const leaseSeconds = Math.ceil(Duration.toSeconds(Duration.decode(lease)))
        return yield* shardOp(dbid, "heartbeat", (b) => b.heartbeat(rows, now, now + leaseSeconds))
      }).pipe(Effect.withSpan("Storage.heartbeat", { attributes: { dbid, jobs: jobs.length } }))

    const fail = (handle: HeldJobId, failure: Failure) =>
      Effect.gen(function*() {
        const h = yield* validateHandle(handle)
        yield* checkRunAfter(failure.runAfter)
        yield* checkFailcount(failure.failcount)
        const at = yield* nowSeconds
        const error = failure.error === undefined ? undefined : boundedError(failure.error)
        const outcome = yield* shardOp(
          h.dbid,
          "fail",
          (b) =>
            Effect.tap(
              b.fail(heldRow(h.jobid, handle.lease), {
                runAfter: failure.runAfter,
                failcount: failure.failcount,
                error,
                at,
                dead: failure.dead
              }),
              (o) => o === "retrying" || o === "dead" ? countMinute(b, 0, 1) : Effect.void
            )
        )
        // A failure that backs the job off is a retry, as a reschedule is (a dead job is not).
        if (outcome === "retrying") jobsRetried.unsafeUpdate(1, [])
        if (outcome === "fenced") yield* fenced(handle, "recording a failure")
        return outcome
      })

    const cancel = (handle: StoredJobId) =>
      Effect.gen(function*() {
        const h = yield* validateHandle(handle)
        const at = yield* nowSeconds
        const outcome = yield* shardOp(h.dbid, "cancel", (b) => b.cancel(h.jobid, at))
        if (outcome === "unsupported") return yield* new JobLifeMissing({ dbid: h.dbid, operation: "cancel" })
        return outcome
      })

    const retryDead = (target: StoredJobId | Selection) =>
      Effect.gen(function*() {
        const now = yield* nowSeconds
        if ("jobid" in target) {
          const h = yield* validateHandle(target)
          return yield* shardOp(h.dbid, "retryDead", (b) => b.retryDead({ jobid: h.jobid }, now))
        }
        const shards = yield* shardsOrOne(target.dbid)
        return yield* sumAll(
          shards.map((b) => shardOp(b.dbid, "retryDead", (s) => s.retryDead({ funcname: target.funcname }, now)))
        )
      })

    const purgeEnded = (ended: JobEnd, olderThan: Duration.DurationInput, selection: Selection = {}) =>
      Effect.gen(function*() {
        const before = (yield* nowSeconds) - Math.floor(Duration.toSeconds(Duration.decode(olderThan)))
        const shards = yield* shardsOrOne(selection.dbid)
        return yield* sumAll(
          shards.map((b) => shardOp(b.dbid, "purge", (s) => s.purgeEnded(ended, before, selection.funcname)))
        )
      })

    const retryNever = (funcname: string, dbid?: number) =>
      Effect.gen(function*() {
        const now = yield* nowSeconds
        const shards = yield* shardsOrOne(dbid)
        return yield* sumAll(shards.map((b) => shardOp(b.dbid, "retryNever", (s) => s.retryNever(funcname, now))))
      })

    const counts = (dbid?: number) =>
      Effect.gen(function*() {
        const now = yield* nowSeconds
        const shards = yield* shardsOrOne(dbid)
        return yield* collectAll(shards.map((b) => shardOp(b.dbid, "counts", (s) => s.counts(now))))
      })

    const list = (filter: ListFilter = {}) =>
      Effect.gen(function*() {
        const limit = filter.limit ?? 100
        if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE) {
          return yield* Effect.fail(
            new InvalidArgument({ argument: "page size", reason: `${limit} is not an integer in [1, ${MAX_PAGE}]` })
          )
        }
        const byRunAfter = filter.order === "runAfter"
        const after = filter.after
        if (byRunAfter && after !== undefined && after.runAfter === undefined) {
          return yield* Effect.fail(
            new InvalidArgument({
              argument: "after",
              reason: "a page by run_after continues from a job's runAfter too"
            })
          )
        }
        const now = yield* nowSeconds
        const shards = yield* shardsOrOne(filter.dbid)
        const base = { funcname: filter.funcname, state: filter.state, uniqkeyContains: filter.uniqkey, limit, now }
        const query = (dbid: number): ShardListQuery | undefined => {
          if (!byRunAfter) {
            if (after !== undefined && dbid < after.dbid) return undefined
            return { ...base, afterJobid: after !== undefined && after.dbid === dbid ? after.jobid : undefined }
          }
          if (after === undefined) return { ...base, order: "runAfter" }
          // Ties on run_after go by dbid: a lower shard continues after the cursor's run_after,
          // a higher one from it, the cursor's own shard after its jobid.
          const afterJobid = dbid < after.dbid ? Number.MAX_SAFE_INTEGER : dbid === after.dbid ? after.jobid : 0
          return { ...base, order: "runAfter", afterRunAfter: after.runAfter, afterJobid }
        }
        const pages = yield* collectAll(shards.flatMap((b) => {
          const q = query(b.dbid)
          return q === undefined ? [] : [shardOp(b.dbid, "list", (s) => s.list(q))]
        }))
        return pages.sort((a, b) => (byRunAfter ? a.runAfter - b.runAfter : 0) || a.dbid - b.dbid || a.jobid - b.jobid)
          .slice(0, limit)
      })

    const get = (handle: StoredJobId) =>
      Effect.flatMap(validateHandle(handle), (h) => shardOp(h.dbid, "get", (b) => b.get(h.jobid)))

    // -- flow control ----------------------------------------------------------------------

    const home = shardIds[0]!
    const checkFuncname = (funcname: string) => {
      const problem = funcnameProblem(funcname)
      return problem === undefined
        ? Effect.void
        : Effect.fail(new InvalidArgument({ argument: "function", reason: problem }))
    }
    const checkConcurrency = (n: number | null | undefined) => {
      const problem = n === undefined || n === null ? undefined : concurrencyProblem(n)
      return problem === undefined
        ? Effect.void
        : Effect.fail(new InvalidArgument({ argument: "concurrency", reason: problem }))
    }
    const flow: FlowShape = {
      home,
      controls: (dbid) => shardOp(dbid, "controls", (b) => b.flow.controls),
      setControl: (funcname, patch) =>
        Effect.zipRight(
          Effect.zipRight(checkFuncname(funcname), checkConcurrency(patch.concurrency)),
          Effect.all(
            sorted.map((b) => shardOp(b.dbid, "setControl", (s) => s.flow.setControl(funcname, patch))),
            { concurrency: "unbounded", mode: "either" }
          ).pipe(Effect.flatMap((results) => {
            const failed = results.find(Either.isLeft)
            if (failed !== undefined) return Effect.fail(failed.left)
            return Effect.succeed(Either.isRight(results[0]!) ? results[0].right : undefined)
          }))
        ),
      claimCapped: (dbid, funcname, cap, limit, lease, maxBytes = DEFAULT_CLAIM_BYTES) =>
        Effect.gen(function*() {
          if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_CLAIM) {
            return yield* new InvalidArgument({
              argument: "claim limit",
              reason: `${limit} is not an integer in [1, ${MAX_CLAIM}]`
            })
          }
          const problem = concurrencyProblem(cap)
          if (problem !== undefined) return yield* new InvalidArgument({ argument: "concurrency", reason: problem })
          const target = yield* backendFor(dbid)
          const now = yield* nowSeconds
          const leaseUntil = now + Math.ceil(Duration.toSeconds(Duration.decode(lease)))
          const token = yield* newLeaseToken
          /** The leased count on shards other than these (read while home's lock is held). */
          const countElsewhere = (skip: ReadonlyArray<number>) =>
            Effect.map(
              Effect.all(
                sorted.filter((b) => !skip.includes(b.dbid)).map((b) => b.leased(funcname, now)),
                { concurrency: "unbounded" }
              ),
              (ns) => ns.reduce((a, n) => a + n, 0)
            )
          // Home's lock serializes every claim of the function; a claim on another shard holds it
          // around its own transaction there (always home first, so no two claims wait on each other).
          const claimed = yield* dbid === home
            ? shardOp(
              home,
              "claimCapped",
              (b) => b.claimCapped(now, funcname, cap, limit, leaseUntil, token, maxBytes, countElsewhere([home]))
            )
            : shardOp(home, "claimCapped", (h) =>
              h.withFunctionLock(funcname, now, (homeCount) =>
                target.claimCapped(
                  now,
                  funcname,
                  cap - homeCount,
                  limit,
                  leaseUntil,
                  token,
                  maxBytes,
                  countElsewhere([home, dbid])
                )))
          countClaimed(claimed)
          return claimed
        }).pipe(Effect.withSpan("Storage.claimCapped", { attributes: { dbid, funcname, cap, limit } })),
      leased: (funcname) =>
        Effect.flatMap(nowSeconds, (now) =>
          Effect.map(
            Effect.all(sorted.map((b) => shardOp(b.dbid, "leased", (s) => s.leased(funcname, now))), {
              concurrency: "unbounded"
            }),
            (ns) => ns.reduce((a, n) => a + n, 0)
          )),
      takeTokens: (funcname, rate, want) =>
        Effect.flatMap(
          Clock.currentTimeMillis,
          (nowMs) => shardOp(home, "takeTokens", (b) => b.flow.takeTokens(funcname, rate, nowMs, want))
        ),
      bucket: (funcname) => shardOp(home, "bucket", (b) => b.flow.bucket(funcname)),
      schedules: shardOp(home, "schedules", (b) => b.flow.schedules),
      putSchedule: (row) =>
        Effect.zipRight(checkFuncname(row.funcname), shardOp(home, "putSchedule", (b) => b.flow.putSchedule(row))),
      removeSchedule: (name) => shardOp(home, "removeSchedule", (b) => b.flow.removeSchedule(name)),
      advanceSchedule: (name, expected, next, jobs) =>
        Effect.gen(function*() {
          const valid: Array<ValidNewJob> = []
          for (const job of jobs) valid.push(yield* validateNewJob(job))
          return yield* shardOp(home, "advanceSchedule", (b) => b.flow.advanceSchedule(name, expected, next, valid))
        })
    }

    /** When this process last dropped old minutes: at most once every `THROUGHPUT_PRUNE_EVERY` minutes. */
    let prunedAt = Number.NEGATIVE_INFINITY
    const throughput = (minutes: number) =>
      Effect.gen(function*() {
        yield* tally.flush
        const current = Math.floor((yield* nowSeconds) / 60)
        const since = current - minutes + 1
        const prune = current - prunedAt >= THROUGHPUT_PRUNE_EVERY ? current - THROUGHPUT_KEEP_MINUTES : undefined
        if (prune !== undefined) prunedAt = current
        const results = yield* Effect.forEach(
          sorted,
          (b) =>
            Effect.either(
              shardOp(b.dbid, "throughput", (s) => s.throughput(since, prune))
            ),
          { concurrency: "unbounded" }
        )
        const sums = new Map<number, { completed: number; failed: number }>()
        const missing: Array<number> = []
        const unavailable: Array<{ shard: number; error: string }> = []
        results.forEach((r, i) => {
          const shard = sorted[i]!.dbid
          if (Either.isLeft(r)) return unavailable.push({ shard, error: r.left.message })
          if (Option.isNone(r.right)) return missing.push(shard)
          for (const m of r.right.value) {
            const sum = sums.get(m.minute) ?? { completed: 0, failed: 0 }
            sums.set(m.minute, { completed: sum.completed + m.completed, failed: sum.failed + m.failed })
          }
        })
        const out: Throughput = {
          minutes: Array.from({ length: minutes }, (_, k) => {
            const minute = since + k
            return { minute, ...(sums.get(minute) ?? { completed: 0, failed: 0 }) }
          }),
          missing,
          unavailable
        }
        return out
      })

    return {
      shardIds,
      flow,
      throughput,
      insert,
      claimDue,
      heartbeat,
      defer,
      leasesHeld,
      extendLeases,
      releaseLeases,
      complete,
      remove,
      reschedule,
      fail,
      cancel,
      retryNever,
      retryDead,
      purgeEnded,
      counts,
      list,
      get,
      jobLife: (dbid: number) => shardOp(dbid, "open", (b) => b.jobLife),
      leases: (dbid: number) => shardOp(dbid, "open", (b) => b.leases),
      health: shardHealth.health
    }
  })

const jobids = (jobs: ReadonlyArray<HeldRow>): ReadonlyArray<number> => jobs.map((j) => j.jobid)

const heldRow = (jobid: number, lease: string | undefined): HeldRow =>
  lease === undefined ? { jobid } : { jobid, lease }

// -- layers ----------------------------------------------------------------------------------

/** Storage over MySQL / MariaDB shards: one pool per shard, opened on first use, closed with the layer. */
export const layer = (
  config: StorageConfig & MysqlShard.MysqlShardOptions & { readonly coalesceInserts?: boolean | undefined }
): Layer.Layer<Storage, ConfigInvalid> =>
  Layer.scoped(
    Storage,
    Effect.gen(function*() {
      const shards = yield* validateShards(config.shards)
      const backends = yield* Effect.forEach(shards, (shard) => MysqlShard.make(shard, config))
      return yield* make(backends, { coolOff: config.coolOff, coalesceInserts: config.coalesceInserts ?? true })
    })
  )

export interface SqliteStorageOptions extends SqliteShard.SqliteShardOptions {
  /** The database file (created readable by its owner only, 0600, if missing). Its jobs have dbid 1. */
  readonly filename: string
  /** Merge concurrent inserts into one transaction (default on, as for MySQL). */
  readonly coalesceInserts?: boolean | undefined
}

/**
 * Storage in one SQLite file (WAL, one writer): the embedded default. The driver is loaded and
 * the file opened (schema applied) when the layer is built, so a missing driver or an unusable
 * file fails at start with a typed error; the database is closed with the layer.
 */
export const layerSqlite = (
  options: SqliteStorageOptions
): Layer.Layer<Storage, SqliteDriverMissing | ShardUnavailable> =>
  Layer.scoped(
    Storage,
    Effect.gen(function*() {
      const driver = yield* SqliteShard.loadDriver()
      const backend = yield* SqliteShard.make(driver, 1, options.filename, options)
      yield* backend.maxArgBytes.pipe(
        Effect.mapError((failure) =>
          SqliteShard.isNativeModuleMissing(failure)
            ? new SqliteDriverMissing({
              reason: `better-sqlite3's native module is not built (${failure.reason})`,
              fix:
                "allow its install script and build it: npm install-scripts approve better-sqlite3 && npm rebuild better-sqlite3",
              cause: failure
            })
            : new ShardUnavailable({ dbid: backend.dbid, reason: failure.reason, cause: failure })
        )
      )
      return yield* make([backend], { coalesceInserts: options.coalesceInserts ?? true })
    })
  )

export interface MemoryStorageOptions extends StorageOptions {
  /** Shard ids (default [1]). */
  readonly shards?: ReadonlyArray<number> | undefined
  /** Shards that start down: every operation on them fails as an unreachable server would. */
  readonly down?: ReadonlyArray<number> | undefined
}

/** Storage in memory, with a handle on each shard (to take one down in a test). */
export const makeMemory = (options: MemoryStorageOptions = {}) =>
  Effect.gen(function*() {
    const ids = options.shards ?? [1]
    const down = new Set(options.down ?? [])
    const shards = yield* Effect.forEach(ids, (id) => MemoryShard.make(id, { down: down.has(id) }))
    const storage = yield* make(shards, options)
    return { storage, shards: new Map(shards.map((s) => [s.dbid, s] as const)) }
  })

/** Storage in memory: the same contract as MySQL, for fast tests of roles and of users' code. */
export const layerMemory = (options: MemoryStorageOptions = {}): Layer.Layer<Storage> =>
  Layer.scoped(Storage, Effect.map(makeMemory(options), (m) => m.storage))
