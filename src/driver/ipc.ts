/**
 * The messages between the Driver and its child processes over the IPC channel (never the
 * children's stdout, which is user output). Both sides decode what they receive.
 */
import { Schema } from "effect"

/** Child → parent. */
export const ChildMessage = Schema.Union(
  /** Registered with the job servers (or trying to): from now on it grabs jobs. */
  Schema.TaggedStruct("ready", {}),
  Schema.TaggedStruct("busy", { function: Schema.String }),
  /** A job ended; `error` when it failed. Times are unix seconds. */
  Schema.TaggedStruct("idle", {
    lastrun: Schema.Number,
    error: Schema.optional(Schema.Struct({ at: Schema.Number, message: Schema.String }))
  })
)
export type ChildMessage = typeof ChildMessage.Type

/** Parent → child: stop grabbing, finish the current job, exit. */
export const ParentMessage = Schema.TaggedStruct("drain", {})
export type ParentMessage = typeof ParentMessage.Type

export const decodeChildMessage = Schema.decodeUnknownEither(ChildMessage)
export const decodeParentMessage = Schema.decodeUnknownEither(ParentMessage)

/** What the parent passes to a child (in its environment, as JSON). */
export const ChildSpec = Schema.Struct({
  modulePath: Schema.String,
  group: Schema.String,
  servers: Schema.Array(Schema.String),
  options: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})
export type ChildSpec = typeof ChildSpec.Type

export const CHILD_SPEC_ENV = "GARIVINI_DRIVER_CHILD"
export const encodeChildSpec = (spec: ChildSpec): string => JSON.stringify(spec)
export const decodeChildSpec = Schema.decodeUnknownEither(Schema.parseJson(ChildSpec))
