/**
 * `garivini functions list | pause | resume | limit` and `garivini schedules list | add | remove`:
 * flow control from the command line (docs/flow-control.md). Each writes the database only; every
 * dispatcher picks the change up within about a second.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Data, Effect, Option } from "effect"
import type { InvalidScheduleSpec } from "../roles/Scheduler.js"
import { define } from "../roles/Scheduler.js"
import { concurrencyProblem, formatRate, MISSED_POLICIES, parseRate } from "../storage/flow.js"
import type { FunctionControl, MissedPolicy, ScheduleRow } from "../storage/flow.js"
import { Storage } from "../storage/Storage.js"
import { optionalInteger, optionalText, outputOptions, storageOptions } from "./config.js"
import { printTable } from "./jobs.js"
import { storageOnly, withSettingsOneShot } from "./shared.js"

class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}
class NotFound extends Data.TaggedError("NotFound")<{ readonly message: string }> {}

const json = Options.boolean("json").pipe(Options.withDescription("[output] The answer as JSON"))
const functionArg = Args.text({ name: "function" })

/** A function's controls as JSON (`status --json`, `functions list --json`). */
export const controlJson = (c: FunctionControl) => ({
  function: c.funcname,
  paused: c.paused,
  rate_limit: c.rate === null ? null : { count: c.rate.count, period_ms: c.rate.periodMs, burst: c.rate.burst },
  concurrency: c.concurrency
})

const rateText = (c: FunctionControl) => c.rate === null ? "-" : `${formatRate(c.rate)} (burst ${c.rate.burst})`
const concurrencyText = (c: FunctionControl) => c.concurrency === null ? "-" : String(c.concurrency)

export const functionsListCommand = Command.make(
  "list",
  { ...storageOptions, json, ...outputOptions },
  (o) =>
    withSettingsOneShot(o, (settings) =>
      Effect.gen(function*() {
        const storage = yield* Storage
        const controls = yield* storage.flow.controls(storage.flow.home)
        if (o.json) return yield* Console.log(JSON.stringify({ functions: controls.map(controlJson) }))
        if (controls.length === 0) return yield* Console.log("no function is paused or limited")
        yield* printTable(
          ["FUNCTION", "STATE", "RATE LIMIT", "CONCURRENCY"],
          controls.map((c) => [c.funcname, c.paused ? "paused" : "running", rateText(c), concurrencyText(c)])
        )
      }).pipe(Effect.provide(storageOnly(settings))))
).pipe(
  Command.withDescription("Functions with a control set: paused or not, rate limit, concurrency limit")
)

const pausing = (name: "pause" | "resume", paused: boolean) =>
  Command.make(
    name,
    { ...storageOptions, function: functionArg, ...outputOptions },
    (o) =>
      withSettingsOneShot(o, (settings) =>
        Effect.gen(function*() {
          const storage = yield* Storage
          yield* storage.flow.setControl(o.function, { paused })
          yield* Console.log(`${o.function} ${paused ? "paused" : "resumed"} (every shard)`)
        }).pipe(Effect.provide(storageOnly(settings))))
  ).pipe(
    Command.withDescription(
      paused
        ? "Pause a function: no dispatcher sends its jobs (they stay stored and due) until resumed"
        : "Resume a paused function: its due jobs go out again, oldest first"
    )
  )

export const pauseCommand = pausing("pause", true)
export const resumeCommand = pausing("resume", false)

export const limitCommand = Command.make("limit", {
  ...storageOptions,
  function: functionArg,
  rate: optionalText("rate", "At most this many jobs started: N/s, N/min, N/h, N/500ms"),
  burst: optionalInteger("burst", "Jobs that may start at once after a quiet spell (default: the rate per second)"),
  concurrency: optionalInteger(
    "concurrency",
    "At most this many of its jobs dispatched or running at once, across every dispatcher (default: no limit)"
  ),
  off: Options.boolean("off").pipe(Options.withDescription("Remove the function's rate and concurrency limits")),
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    Effect.gen(function*() {
      const setting = Option.isSome(o.rate) || Option.isSome(o.concurrency)
      if (o.off === setting) {
        return yield* new UsageError({
          message: "functions limit takes --rate N/UNIT [--burst N], --concurrency N (or both), or --off"
        })
      }
      const rate = o.off
        ? null
        : Option.isSome(o.rate)
        ? parseRate(o.rate.value, Option.getOrUndefined(o.burst))
        : undefined
      if (typeof rate === "string") return yield* new UsageError({ message: rate })
      const concurrency = o.off ? null : Option.getOrUndefined(o.concurrency)
      const problem = concurrency === undefined || concurrency === null ? undefined : concurrencyProblem(concurrency)
      if (problem !== undefined) return yield* new UsageError({ message: problem })
      return yield* Effect.gen(function*() {
        const storage = yield* Storage
        const now = yield* storage.flow.setControl(o.function, { rate, concurrency })
        const limits = [
          now?.rate == null ? "" : `at most ${formatRate(now.rate)} (burst ${now.rate.burst})`,
          now?.concurrency == null ? "" : `at most ${now.concurrency} at once`
        ].filter((x) => x !== "")
        yield* Console.log(
          limits.length === 0
            ? `${o.function}: no limit`
            : `${o.function}: ${limits.join(", ")}, across every dispatcher`
        )
      }).pipe(Effect.provide(storageOnly(settings)))
    }))).pipe(
    Command.withDescription(
      "Set or remove a function's rate limit (jobs started per interval) and concurrency limit (jobs at once)"
    )
  )

export const functionsCommand = Command.make("functions").pipe(
  Command.withDescription("Flow control per function: pause, resume, rate and concurrency limits"),
  Command.withSubcommands([functionsListCommand, pauseCommand, resumeCommand, limitCommand])
)

/** A schedule as JSON. */
export const scheduleJson = (r: ScheduleRow) => ({
  name: r.name,
  cron: r.cron,
  timezone: r.timezone,
  function: r.funcname,
  arg: r.arg,
  missed: r.missed,
  next_slot: new Date(r.nextSlot * 1000).toISOString()
})

export const schedulesListCommand = Command.make(
  "list",
  { ...storageOptions, json, ...outputOptions },
  (o) =>
    withSettingsOneShot(o, (settings) =>
      Effect.gen(function*() {
        const rows = yield* Effect.flatMap(Storage, (s) => s.flow.schedules)
        if (o.json) return yield* Console.log(JSON.stringify({ schedules: rows.map(scheduleJson) }))
        if (rows.length === 0) return yield* Console.log("no schedule")
        yield* printTable(
          ["NAME", "CRON", "TZ", "FUNCTION", "MISSED", "NEXT SLOT"],
          rows.map((r) => [r.name, r.cron, r.timezone ?? "UTC", r.funcname, r.missed, scheduleJson(r).next_slot])
        )
      }).pipe(Effect.provide(storageOnly(settings))))
).pipe(Command.withDescription("Recurring schedules"))

export const schedulesAddCommand = Command.make("add", {
  ...storageOptions,
  name: Args.text({ name: "name" }),
  cron: Options.text("cron").pipe(
    Options.withDescription("Cron expression: 5 fields, or 6 with seconds first (\"*/10 * * * * *\")")
  ),
  function: Options.text("function").pipe(Options.withDescription("The function each slot's job is for")),
  arg: optionalText("arg", "The job's arg (default empty)"),
  tz: optionalText("tz", "IANA time zone the expression is read in (default UTC)"),
  missed: Options.choice("missed", MISSED_POLICIES).pipe(
    Options.withDefault<MissedPolicy>("skip"),
    Options.withDescription("Slots missed while no runner was up: skip, or run-once (default skip)")
  ),
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    define([{
      name: o.name,
      cron: o.cron,
      funcname: o.function,
      arg: Option.getOrNull(o.arg),
      timezone: Option.getOrNull(o.tz),
      missed: o.missed
    }]).pipe(
      Effect.flatMap(([row]) =>
        Console.log(`schedule ${o.name}: ${o.cron} -> ${o.function}, next slot ${scheduleJson(row!).next_slot}`)
      ),
      Effect.catchTag("InvalidScheduleSpec", (e: InvalidScheduleSpec) => new UsageError({ message: e.message })),
      Effect.provide(storageOnly(settings))
    ))).pipe(Command.withDescription("Create or replace a recurring schedule"))

export const schedulesRemoveCommand = Command.make("remove", {
  ...storageOptions,
  name: Args.text({ name: "name" }),
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    Effect.gen(function*() {
      const removed = yield* Effect.flatMap(Storage, (s) => s.flow.removeSchedule(o.name))
      if (!removed) return yield* new NotFound({ message: `no schedule ${o.name}` })
      yield* Console.log(`schedule ${o.name} removed`)
    }).pipe(Effect.provide(storageOnly(settings))))).pipe(Command.withDescription("Remove a recurring schedule"))

export const schedulesCommand = Command.make("schedules").pipe(
  Command.withDescription("Recurring schedules (cron), each slot enqueued once by the QueueRunners"),
  Command.withSubcommands([schedulesListCommand, schedulesAddCommand, schedulesRemoveCommand])
)
