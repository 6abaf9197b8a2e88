/**
 * `garivini inject`: stores N test jobs (the original `gv_inject`): directly in the database,
 * or with `--pure` through `inject_jobs` (an Injector and a Controller must be running).
 */
import { Command, Options } from "@effect/cli"
import { Console, Data, Effect, Option } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import { funcnameProblem, JOB_PRIORITIES, nowSeconds } from "../Job.js"
import type { JobPriority } from "../Job.js"
import * as Client from "../roles/Client.js"
import { INJECT_FUNCTION } from "../roles/Injector.js"
import { errorText } from "../roles/QueueRunner.js"
import { connectionOptions, optionalText, outputOptions } from "./config.js"
import { servicesLayer, storageOnly, withSettingsOneShot } from "./shared.js"

class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}
class InjectFailed extends Data.TaggedError("InjectFailed")<{ readonly message: string; readonly cause?: unknown }> {}

const options = {
  ...connectionOptions,
  count: Options.integer("count").pipe(Options.withDefault(1), Options.withDescription("How many jobs (default 1)")),
  function: Options.text("function").pipe(
    Options.withDefault("foo"),
    Options.withDescription("The Gearman function (default foo)")
  ),
  arg: optionalText("arg", "The payload (default: hello: <unix time>)"),
  priority: Options.choice("priority", JOB_PRIORITIES).pipe(
    Options.withDefault("normal" as const),
    Options.withDescription("high, normal (default) or low: claims take higher priorities first")
  ),
  pure: Options.boolean("pure").pipe(
    Options.withDescription("Submit through inject_jobs (low-latency mode, to --gearmand) instead of the database")
  ),
  ...outputOptions
}

/** Synchronous submits: each answer says the job is durable (or why not). */
const injectPure = (count: number, funcname: string, arg: string, priority: JobPriority) =>
  Effect.gen(function*() {
    const gearman = yield* Gearman
    const body = JSON.stringify(priority === "normal" ? { funcname, arg } : { funcname, arg, priority })
    yield* Effect.forEach(Array.from({ length: count }), () =>
      gearman.submit(INJECT_FUNCTION, body).pipe(
        Effect.mapError((e) =>
          new InjectFailed({
            message: `inject_jobs failed: ${
              e._tag === "GearmanJobException" ? Buffer.from(e.data).toString() : errorText(e)
            }`,
            cause: e
          })
        )
      ), { concurrency: 16, discard: true })
    yield* Console.log(`injected ${count} job(s) for ${funcname} through ${INJECT_FUNCTION}`)
  })

export const injectCommand = Command.make(
  "inject",
  options,
  (o) =>
    withSettingsOneShot(o, (settings) =>
      Effect.gen(function*() {
        if (o.count < 1)
          return yield* Effect.fail(new UsageError({ message: "invalid option --count: must be at least 1" }))
        const badName = funcnameProblem(o.function)
        if (badName !== undefined)
          return yield* Effect.fail(new UsageError({ message: `invalid option --function: ${badName}` }))
        const now = yield* nowSeconds
        const arg = Option.getOrElse(o.arg, () => `hello: ${now}`)
        if (o.pure)
          return yield* injectPure(o.count, o.function, arg, o.priority).pipe(Effect.provide(servicesLayer(settings)))
        const outcomes = yield* Client.insertJobs(
          Array.from({ length: o.count }, () => ({ funcname: o.function, arg, priority: o.priority }))
        ).pipe(
          Effect.provide(storageOnly(settings))
        )
        yield* Console.log(`stored ${outcomes.length} job(s) for ${o.function}`)
      }))
).pipe(Command.withDescription("Store test jobs (directly, or through inject_jobs with --pure)"))
