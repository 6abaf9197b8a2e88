/**
 * Declaring Driver workers (TypeScript has no method attributes): a worker module exports
 * `Driver.define({ jobs: { resize: Driver.job({ min: 2, max: 15 }, handler) } })`.
 *
 * Semantics of Gearman::Driver: the registered function is `prefix + name` (default prefix: the
 * module's name and `::`); jobs sharing a `group` share processes; `decode`/`encode` wrap the
 * workload and the result; `begin` runs before each job, `end` after it even when it failed;
 * min = 1 and max = 1 unless said otherwise; attribute sets merge override > job > default.
 */
import type { Effect } from "effect"
import type { Payload } from "../gearman/GearmanClient.js"
import type * as GearmanWorker from "../gearman/GearmanWorker.js"
import type { JobHandler } from "../roles/Worker.js"

/** Options from the config file's `worker_options` (`GLOBAL` merged under the module's own). */
export type DriverWorkerOptions = Readonly<Record<string, unknown>>

/** What a handler, `begin` and `end` receive besides the workload. */
export interface JobContext {
  /** The registered Gearman function. */
  readonly function: string
  /** The Driver job (prefix + group or name) whose process runs it. */
  readonly driverJob: string
  readonly gearman: GearmanWorker.GearmanJob
  readonly options: DriverWorkerOptions
}

export interface Attributes {
  readonly min?: number
  readonly max?: number
  /** Jobs with the same group share processes (default: the job's own name). */
  readonly group?: string
  readonly decode?: (payload: Buffer) => unknown
  readonly encode?: (result: unknown) => Payload
}

export interface JobAttributes<I, O> {
  readonly min?: number
  readonly max?: number
  readonly group?: string
  /** Turns the payload into the handler's workload (default: the payload as UTF-8 text). */
  readonly decode?: (payload: Buffer) => I
  /** Turns the handler's result into the answer (default: the result as is). */
  readonly encode?: (result: O) => Payload
}

export type Hook = (context: JobContext, workload: unknown) => Effect.Effect<void, unknown>

/** A job's handler, erased to what the child process runs. */
export type JobSpec =
  | {
    readonly _tag: "Plain"
    readonly attributes: Attributes
    readonly handler: (workload: unknown, context: JobContext) => Effect.Effect<unknown, unknown>
  }
  | {
    /** A Garivini worker-helper handler: the job's row is completed or backed off in MySQL. */
    readonly _tag: "Durable"
    readonly attributes: Omit<Attributes, "decode" | "encode">
    readonly handler: JobHandler
    /** Attempts before the job is dead (default 25). */
    readonly maxAttempts?: number | undefined
  }

/** Marks a definition; a global symbol so copies of the library loaded twice still agree. */
export const DefinitionTypeId: unique symbol = Symbol.for("garivini/Driver/Definition")

export interface DefinitionInput {
  readonly jobs: Readonly<Record<string, JobSpec>>
  /** Name used for the default prefix, `job_runtime_attributes` and `worker_options` (default: the file's name). */
  readonly name?: string
  /** Prepended to every job name (default `<name>::`; `""` is allowed). */
  readonly prefix?: string
  readonly default?: Attributes
  readonly override?: Attributes
  /** Runs before each job with the decoded workload; if it fails the job fails and `end` is skipped. */
  readonly begin?: Hook
  /** Runs after each job, also when the job failed. */
  readonly end?: Hook
  /** The child's process title: given the original title and the Driver job name (undefined: unchanged). */
  readonly processName?: (original: string, driverJob: string) => string | undefined
}

export interface Definition extends DefinitionInput {
  readonly [DefinitionTypeId]: typeof DefinitionTypeId
}

export const define = (input: DefinitionInput): Definition => ({ ...input, [DefinitionTypeId]: DefinitionTypeId })

export const isDefinition = (u: unknown): u is Definition =>
  typeof u === "object" && u !== null && DefinitionTypeId in u && "jobs" in u && typeof u.jobs === "object" &&
  u.jobs !== null

/** A job whose handler gets the decoded workload (text by default) and returns the result to encode. */
export const job = <I = string, O = Payload | void>(
  attributes: JobAttributes<I, O>,
  handler: (workload: I, context: JobContext) => Effect.Effect<O, unknown>
): JobSpec => ({
  _tag: "Plain",
  // The job's own decode produces its I and its encode takes its O; erasing them here is safe as
  // long as default/override sets do not replace them with functions of other types (documented).
  attributes: attributes as Attributes,
  handler: handler as (workload: unknown, context: JobContext) => Effect.Effect<unknown, unknown>
})

/**
 * A durable job: a Garivini worker-helper handler (the row is completed or backed off in MySQL).
 * `options.maxAttempts`: attempts before the job is dead (default 25; Worker.DurableWorkerOptions).
 */
export const durable = (
  attributes: Omit<JobAttributes<never, never>, "decode" | "encode">,
  handler: JobHandler,
  options: { readonly maxAttempts?: number | undefined } = {}
): JobSpec => ({ _tag: "Durable", attributes, handler, maxAttempts: options.maxAttempts })
