/**
 * One mapping from a shard's failure kinds (ShardBackend.ts) to the public errors (errors.ts):
 * a refusal is `StorageError` (not applied), an unreached shard `ShardUnavailable`; a lost
 * connection is `ShardUnavailable` too, except for an insert, where it is
 * `InsertOutcomeUnknown` (the jobs may be stored). The backend's failure is kept as the cause.
 */
import { InsertOutcomeUnknown, ShardUnavailable, StorageError } from "../errors.js"
import type { ShardFailure } from "./ShardBackend.js"

/** A failure of an operation on stored jobs (claim, complete, ...). */
export function publicError(dbid: number, operation: string, failure: ShardFailure): StorageError | ShardUnavailable
/** A failure of an insert of `count` jobs. */
export function publicError(
  dbid: number,
  operation: "insert",
  failure: ShardFailure,
  count: number
): StorageError | ShardUnavailable | InsertOutcomeUnknown
export function publicError(
  dbid: number,
  operation: string,
  failure: ShardFailure,
  count?: number
): StorageError | ShardUnavailable | InsertOutcomeUnknown {
  switch (failure._tag) {
    case "ShardRejected":
      return new StorageError({ dbid, operation, reason: failure.reason, code: failure.code, cause: failure })
    case "ShardLost":
      if (count !== undefined) return new InsertOutcomeUnknown({ dbid, count, reason: failure.reason, cause: failure })
      return new ShardUnavailable({ dbid, reason: failure.reason, cause: failure })
    case "ShardUnreached":
      return new ShardUnavailable({ dbid, reason: failure.reason, cause: failure })
  }
}
