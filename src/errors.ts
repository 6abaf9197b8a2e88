/**
 * The typed errors of Garivini's job layer. Each names what happened, carries what a caller
 * needs to act on it, and renders a one-line message without secrets.
 */
import { Data } from "effect"

/** A job given to `insert` (or a handle given to any operation) is not valid. Nothing was stored. */
export class InvalidJob extends Data.TaggedError("InvalidJob")<{
  readonly reason: string
  /** Position of the offending job in the batch, when the input was a batch. */
  readonly index?: number
  /** What rejected it, when it was a decoder (the Schema's ParseError for a worker JSON). */
  readonly cause?: unknown
}> {
  override get message(): string {
    return this.index === undefined ? `invalid job: ${this.reason}` : `invalid job #${this.index}: ${this.reason}`
  }
}

/**
 * An argument of a storage operation is out of range or names nothing (a page size, a claim
 * limit or byte budget, a dbid that is not configured): the caller's mistake, not a bad job.
 */
export class InvalidArgument extends Data.TaggedError("InvalidArgument")<{
  readonly argument: string
  readonly reason: string
}> {
  override get message(): string {
    return `invalid ${this.argument}: ${this.reason}`
  }
}

/** A run-at value outside the language: `never`, `+N`, an absolute unix time or a Duration. */
export class InvalidSchedule extends Data.TaggedError("InvalidSchedule")<{
  readonly input: string
  readonly reason: string
}> {
  override get message(): string {
    return `invalid schedule ${JSON.stringify(this.input)}: ${this.reason}`
  }
}

/**
 * One shard could not be reached (or the connection to it was lost). For a unique job this is
 * final: moving it to another shard would break uniqueness.
 */
export class ShardUnavailable extends Data.TaggedError("ShardUnavailable")<{
  readonly dbid: number
  readonly reason: string
  /** The driver's error, when there was one. */
  readonly cause?: unknown
}> {
  override get message(): string {
    return `shard ${this.dbid} is unavailable: ${this.reason}`
  }
}

/** Every shard is down: there is nowhere to store the job. */
export class StorageUnavailable extends Data.TaggedError("StorageUnavailable")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `storage unavailable: ${this.reason}`
  }
}

/** The server refused a statement (it was not applied): a schema, permission or data problem. */
export class StorageError extends Data.TaggedError("StorageError")<{
  readonly dbid: number
  readonly operation: string
  readonly reason: string
  /** The server's error code (`ER_DUP_ENTRY`, `SQLITE_FULL`...), when it sent one. */
  readonly code?: string | undefined
  /** The driver's error. */
  readonly cause?: unknown
}> {
  override get message(): string {
    return `shard ${this.dbid}: ${this.operation} failed: ${this.reason}`
  }
}

/**
 * The connection was lost after an insert was sent: the jobs may or may not be stored.
 * Never retried blindly (that could store them twice); the caller decides.
 */
export class InsertOutcomeUnknown extends Data.TaggedError("InsertOutcomeUnknown")<{
  readonly dbid: number
  readonly count: number
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `shard ${this.dbid}: ${this.count} job(s) may or may not have been stored: ${this.reason}`
  }
}

/** Why one shard's part of an insert failed. */
export type ShardInsertError = ShardUnavailable | StorageUnavailable | StorageError | InsertOutcomeUnknown

/**
 * A batch spanning several shards was stored on some and failed on others. `outcomes` has an
 * entry for each stored job (undefined where its shard failed); `failures` says which jobs
 * failed and why, so a caller can retry exactly those.
 */
export class PartialInsert extends Data.TaggedError("PartialInsert")<{
  readonly outcomes: ReadonlyArray<
    { readonly handle: { readonly dbid: number; readonly jobid: number }; readonly duplicate: boolean } | undefined
  >
  readonly failures: ReadonlyArray<
    { readonly indices: ReadonlyArray<number>; readonly error: ShardInsertError | InvalidJob }
  >
}> {
  override get message(): string {
    const failed = this.failures.reduce((n, f) => n + f.indices.length, 0)
    return `insert partly failed: ${failed} of ${this.outcomes.length} job(s) not stored (${
      this.failures.map((f) => f.error.message).join("; ")
    })`
  }
}

/** Errors of `Storage.insert`. */
export type InsertError = InvalidJob | ShardInsertError | PartialInsert

/** Errors of operations on stored jobs (claim, complete, defer, reschedule, inspect). */
export type ShardOperationError = InvalidJob | InvalidArgument | ShardUnavailable | StorageError

/**
 * The operation needs migration 2's columns (`ended`, `ended_at`...) and this shard's `job`
 * table is still v1: `garivini migrate` adds them (additively; Perl clients keep working).
 */
export class JobLifeMissing extends Data.TaggedError("JobLifeMissing")<{
  readonly dbid: number
  readonly operation: string
}> {
  override get message(): string {
    return `shard ${this.dbid}: ${this.operation} needs migration 0002_job_life (the job table is v1); run \`garivini migrate\` to enable it`
  }
}

/** Configuration that cannot be used; `field` names the bad setting. */
export class ConfigInvalid extends Data.TaggedError("ConfigInvalid")<{
  readonly field: string
  readonly reason: string
  /** The failure behind it (a file's read or parse error, a decoder's ParseError), when there was one. */
  readonly cause?: unknown
}> {
  override get message(): string {
    return `invalid configuration ${this.field}: ${this.reason}`
  }
}

/**
 * SQLite storage was asked for but its driver cannot be loaded: `@effect/sql-sqlite-node` is an
 * optional dependency, left out by `--omit=optional` or when better-sqlite3's native module did not build.
 */
export class SqliteDriverMissing extends Data.TaggedError("SqliteDriverMissing")<{
  readonly reason: string
  readonly fix: string
  /** The import's or the open's failure. */
  readonly cause?: unknown
}> {
  override get message(): string {
    return `SQLite storage is not available: ${this.reason}; ${this.fix}`
  }
}

/** The web console could not listen where it was told (the port in use, an address not on this machine). */
export class WebListenFailed extends Data.TaggedError("WebListenFailed")<{
  readonly address: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `the web console cannot listen on ${this.address}: ${this.reason}`
  }
}
