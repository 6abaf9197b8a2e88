/**
 * A Driver child process: loads one worker module and serves one Driver job's functions (its
 * group) with its own Gearman connections, one job at a time. It tells the parent over IPC when
 * it is ready, busy and idle again (with the last run and the last error). On `drain` or the
 * loss of the IPC channel (the parent died) it stops grabbing, finishes the current job and
 * exits 0 (SIGTERM and SIGINT interrupt the main fiber, which drains the same way).
 */
// The subpath: the package barrel costs a child half a second at start.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Deferred, Effect, Either, Exit, Layer, Option } from "effect"
import type { Scope } from "effect"
import type { Payload } from "../gearman/GearmanClient.js"
import { WorkException, WorkFail } from "../gearman/errors.js"
import { Gearman, layer as gearmanLayer } from "../gearman/Gearman.js"
import type * as GearmanWorker from "../gearman/GearmanWorker.js"
import { loggerLayer, tracingInEnv } from "../cli/logging.js"
import { driverJobs, loadModule, type DriverFunction, type DriverJob } from "./attributes.js"
import type { Definition, JobContext, DriverWorkerOptions } from "./define.js"
import type { DurableFunction } from "./durable.js"
import { CHILD_SPEC_ENV, decodeChildSpec, decodeParentMessage, type ChildMessage } from "./ipc.js"

const send = (message: ChildMessage) => Effect.sync(() => void (process.connected && process.send?.(message)))
const now = () => Math.floor(Date.now() / 1000)

/** A failure's one-line message for the console's `ERROR:` column. */
const describe = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  const value: unknown = Option.isSome(failure) ? failure.value : Cause.squash(cause)
  const text = typeof value === "object" && value !== null && "message" in value && typeof value.message === "string" &&
      value.message !== ""
    ? value.message
    : typeof value === "object" && value !== null && "reason" in value && typeof value.reason === "string"
    ? value.reason
    : String(value)
  return text.split("\n")[0] ?? ""
}

const toPayload = (value: unknown): Payload =>
  value === undefined || value === null
    ? ""
    : typeof value === "string" || value instanceof Uint8Array
    ? value
    : JSON.stringify(value)

/**
 * One function's handler with the Driver's wrapper around it: decode → begin → handler → end
 * (also after a failure) → encode, and the busy/idle reports.
 */
const wrap = <R>(
  definition: Definition,
  job: DriverJob,
  fn: DriverFunction,
  options: DriverWorkerOptions,
  durable: Option.Option<(gjob: GearmanWorker.GearmanJob) => Effect.Effect<Payload | void, WorkFail | WorkException, R>>
): GearmanWorker.Handler<R> =>
(gjob) =>
  Effect.gen(function*() {
    yield* send({ _tag: "busy", function: fn.registered })
    const context: JobContext = { function: fn.registered, driverJob: job.name, gearman: gjob, options }
    const failed = (what: string) => (e: unknown) =>
      new Error(`${what} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e })
    const decode = fn.spec._tag === "Plain" ? fn.attributes.decode : undefined
    const encode = fn.spec._tag === "Plain" ? fn.attributes.encode : undefined
    const run = Effect.gen(function*() {
      const workload: unknown = decode
        ? yield* Effect.try({ try: () => decode(gjob.payload), catch: failed("decode") })
        : gjob.text()
      if (definition.begin) yield* definition.begin(context, workload)
      const body = Option.isSome(durable)
        ? durable.value(gjob)
        : fn.spec._tag === "Plain"
        ? fn.spec.handler(workload, context)
        : Effect.void
      const exit = yield* Effect.exit(body)
      if (definition.end) {
        const ended = yield* Effect.exit(definition.end(context, workload))
        if (Exit.isFailure(ended)) yield* Effect.logError(`end failed: ${describe(ended.cause)}`)
      }
      const value = yield* exit
      return encode ? yield* Effect.try({ try: () => encode(value), catch: failed("encode") }) : toPayload(value)
    })
    const exit = yield* Effect.exit(run)
    const at = now()
    if (Exit.isSuccess(exit)) {
      yield* send({ _tag: "idle", lastrun: at })
      return exit.value
    }
    const message = describe(exit.cause)
    yield* send({ _tag: "idle", lastrun: at, error: { at, message } })
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure) && failure.value instanceof WorkException) return yield* Effect.fail(failure.value)
    return yield* Effect.fail(new WorkFail({ reason: message, cause: Cause.squash(exit.cause) }))
  }).pipe(Effect.annotateLogs({ driverJob: job.name, function: fn.registered }))

const main = Effect.gen(function*() {
  // Listen first: the parent may die while the module loads.
  const stop = yield* Deferred.make<void>()
  const stopNow = () => Effect.runSync(Deferred.succeed(stop, undefined))
  process.on("message", (raw) => {
    if (Either.isRight(decodeParentMessage(raw))) stopNow()
  })
  // The parent died or closed the channel: nobody is left to supervise us.
  process.on("disconnect", stopNow)
  // Gone before we listened (a slow start): the event has passed already.
  if (!process.connected) stopNow()

  const spec = yield* decodeChildSpec(process.env[CHILD_SPEC_ENV] ?? "").pipe(
    Effect.mapError((e) => new Error(`${CHILD_SPEC_ENV} is not a child spec: ${e.message}`, { cause: e })),
    Effect.orDie
  )
  const module = yield* loadModule(spec.modulePath).pipe(Effect.orDie)
  const job = (yield* driverJobs(module).pipe(Effect.orDie)).find((j) => j.group === spec.group)
  if (job === undefined) return yield* Effect.die(new Error(`${spec.modulePath} has no job group ${spec.group}`))
  const title = module.definition.processName?.(process.title, job.name)
  if (title !== undefined) process.title = title

  const serveGroup = (
    durableFunction: (fn: DriverFunction) => Option.Option<DurableFunction>
  ): Effect.Effect<void, never, Scope.Scope | Gearman> =>
    Effect.gen(function*() {
      const gearman = yield* Gearman
      const handlers: Record<string, GearmanWorker.FunctionSpec<never>> = {}
      for (const fn of job.functions) {
        const durable = durableFunction(fn)
        const handler = wrap(module.definition, job, fn, spec.options, Option.map(durable, (d) => d.handler))
        handlers[fn.registered] = Option.isSome(durable) ? { handler, workKey: durable.value.workKey } : handler
      }
      // A name the worker refuses to register cannot be served: the child dies saying why.
      yield* gearman.serve(handlers, { concurrency: 1 }).pipe(Effect.orDie)
      yield* send({ _tag: "ready" })
      yield* Deferred.await(stop)
    })

  const gearman = gearmanLayer({ servers: spec.servers })
  if (!job.functions.some((f) => f.spec._tag === "Durable"))
    return yield* Effect.scoped(serveGroup(() => Option.none())).pipe(Effect.provide(gearman))
  const { withDurable } = yield* Effect.promise(() => import("./durable.js"))
  return yield* withDurable(serveGroup).pipe(Effect.provide(gearman))
})

// Logs go to stderr, one line each: the parent relays them into its own log.
// Spans over OTLP as the parent's (the same variables); the tracing modules load only then.
const tracing = tracingInEnv()
  ? Layer.unwrapEffect(
    Effect.map(Effect.promise(() => import("../tracing/Otlp.js")), (Tracing) =>
      Layer.catchAll(
        Tracing.layerFromEnv("driver-child"),
        (e) => Layer.effectDiscard(Effect.logWarning(`tracing off: ${e.message}`))
      ))
  )
  : Layer.empty

NodeRuntime.runMain(
  main.pipe(
    Effect.annotateLogs({ role: "driver-child" }),
    Effect.provide(loggerLayer("logfmt")),
    Effect.provide(tracing)
  ),
  {
    disableErrorReporting: false,
    // The IPC channel would keep the process alive after the work is done.
    teardown: (exit) => process.exit(Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause) ? 0 : 1)
  }
)
