/** `garivini jobs list | show | retry | delete`: inspect and repair stored jobs. */
import { Args, Command, Options } from "@effect/cli"
import { Console, Data, Effect, Option } from "effect"
import { formatHandle, jobState as stateOf, nowSeconds, parseHandle, type StoredJobId } from "../Job.js"
import type { StoredJob } from "../Job.js"
import { Storage } from "../storage/Storage.js"
import { optionalInteger, optionalText, outputOptions, queueRunnerOptions, storageOptions } from "./config.js"
import { storageOnly, withSettingsOneShot } from "./shared.js"
import { deleteJob, retryJob } from "../jobActions.js"
import type { ActionOutcome } from "../jobActions.js"

class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string; readonly cause?: unknown }> {}
class NotFound extends Data.TaggedError("NotFound")<{ readonly message: string }> {}
/** A repair that could run a job twice, or not stop it, refused without --force. */
class Refused extends Data.TaggedError("Refused")<{ readonly message: string }> {}

const preview = (bytes: Uint8Array) => {
  const clean = Buffer.from(bytes).toString("utf8").replace(/[^\x20-\x7e]/g, ".")
  return clean.length > 40 ? `${clean.slice(0, 37)}...` : clean
}

const asJson = (job: StoredJob, now: number) => ({
  handle: formatHandle(job),
  funcname: job.funcname,
  state: stateOf(job, now),
  run_after: job.runAfter,
  failcount: job.failcount,
  flag: job.flag,
  uniqkey: job.uniqkey,
  coalesce: job.coalesce,
  arg: Buffer.from(job.arg).toString("base64")
})

/** Prints rows as aligned columns. */
export const printTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  return Effect.forEach(
    [header, ...rows],
    (row) => Console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()),
    { discard: true }
  )
}

const handleArg = Args.text({ name: "dbid:jobid" })
/** A handle typed on the command line: a malformed one is bad usage (exit 2). */
const parseHandleArg = (text: string) =>
  Effect.mapError(parseHandle(text), (e) => new UsageError({ message: e.reason, cause: e }))
const json = Options.boolean("json").pipe(Options.withDescription("[output] The answer as JSON"))

export const listCommand = Command.make("list", {
  ...storageOptions,
  function: optionalText("function", "Only this function"),
  state: Options.choice("state", ["due", "scheduled", "never"]).pipe(
    Options.optional,
    Options.withDescription("due; scheduled (a future run_after, incl. leased jobs); never")
  ),
  shard: optionalInteger("shard", "Only this shard (dbid)"),
  limit: Options.integer("limit").pipe(Options.withDefault(100), Options.withDescription("Page size (default 100)")),
  after: optionalText("after", "Continue after this dbid:jobid"),
  json,
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    Effect.gen(function*() {
      const after = Option.isSome(o.after) ? yield* parseHandleArg(o.after.value) : undefined
      const storage = yield* Storage
      const jobs = yield* storage.list({
        funcname: Option.getOrUndefined(o.function),
        state: Option.getOrUndefined(o.state),
        dbid: Option.getOrUndefined(o.shard),
        limit: o.limit,
        after
      })
      const now = yield* nowSeconds
      if (o.json)
        return yield* Effect.forEach(jobs, (job) => Console.log(JSON.stringify(asJson(job, now))), { discard: true })
      yield* printTable(
        ["HANDLE", "FUNCTION", "STATE", "RUN AFTER", "FAILS", "FLAG", "UNIQKEY", "ARG"],
        jobs.map((
          j
        ) => [
          formatHandle(j),
          j.funcname,
          stateOf(j, now),
          new Date(j.runAfter * 1000).toISOString(),
          String(j.failcount),
          j.flag,
          j.uniqkey ?? "",
          preview(j.arg)
        ])
      )
      yield* Console.log(
        `${jobs.length} job(s)${
          jobs.length === o.limit ? ` (more: --after ${formatHandle(jobs[jobs.length - 1]!)})` : ""
        }`
      )
    }).pipe(Effect.provide(storageOnly(settings))))).pipe(
    Command.withDescription("List stored jobs, filtered and paged")
  )

export const showCommand = Command.make(
  "show",
  { ...storageOptions, handle: handleArg, json, ...outputOptions },
  (o) =>
    // The handle is checked before the store is opened: a bad argument touches no database.
    withSettingsOneShot(o, (settings) =>
      Effect.flatMap(parseHandleArg(o.handle), (handle) =>
        Effect.gen(function*() {
          const job = yield* Effect.flatMap(Storage, (s) => s.get(handle))
          if (Option.isNone(job)) return yield* Effect.fail(new NotFound({ message: `no job ${formatHandle(handle)}` }))
          const now = yield* nowSeconds
          if (o.json) return yield* Console.log(JSON.stringify(asJson(job.value, now)))
          const j = job.value
          yield* printTable(["FIELD", "VALUE"], [
            ["handle", formatHandle(j)],
            ["funcname", j.funcname],
            ["state", stateOf(j, now)],
            ["run_after", `${j.runAfter} (${new Date(j.runAfter * 1000).toISOString()})`],
            ["failcount", String(j.failcount)],
            ["flag", j.flag],
            ["uniqkey", j.uniqkey ?? "(none)"],
            ["coalesce", j.coalesce ?? "(none)"],
            ["arg", `${j.arg.length} bytes: ${preview(j.arg)}`]
          ])
        }).pipe(Effect.provide(storageOnly(settings)))))
).pipe(Command.withDescription("Show one job"))

const force = Options.boolean("force").pipe(
  Options.withDescription("Act even on a job that may be running right now (its run_after within a lease of now)")
)
const lease = queueRunnerOptions.lease

/** An action's outcome as the command's answer: a line on stdout, or a failure. */
const answer = (outcome: ActionOutcome) => {
  switch (outcome._tag) {
    case "Done":
    case "Unchanged":
      return Console.log(outcome.message)
    case "NotFound":
      return Effect.fail(new NotFound({ message: outcome.message }))
    case "Refused":
      return Effect.fail(new Refused({ message: `${outcome.message}; --force to do it anyway` }))
  }
}

export const retryCommand = Command.make("retry", {
  ...storageOptions,
  handle: handleArg.pipe(Args.optional),
  function: optionalText("function", "Make every `never` job of this function due"),
  force,
  lease,
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    Effect.gen(function*() {
      if (Option.isSome(o.handle) === Option.isSome(o.function)) {
        return yield* Effect.fail(
          new UsageError({ message: "jobs retry takes a dbid:jobid or --function NAME (its `never` jobs), not both" })
        )
      }
      return Option.isSome(o.handle) ? Option.some(yield* parseHandleArg(o.handle.value)) : Option.none<StoredJobId>()
    }).pipe(Effect.flatMap((parsed) =>
      Effect.gen(function*() {
        const storage = yield* Storage
        if (Option.isNone(parsed) && Option.isSome(o.function)) {
          // `never` jobs only: no dispatcher holds one (a lease is never `never`), so none is running.
          const n = yield* storage.retryNever(o.function.value)
          return yield* Console.log(`made ${n} never job(s) of ${o.function.value} due`)
        }
        yield* answer(
          yield* retryJob(Option.getOrThrow(parsed), { lease: settings.queueRunner.lease, force: o.force })
        )
      }).pipe(Effect.provide(storageOnly(settings)))
    )))).pipe(
    Command.withDescription(
      "Make a job due now (refused while it may be running, unless --force), or every never job of a function"
    )
  )

export const deleteCommand = Command.make(
  "delete",
  { ...storageOptions, handle: handleArg, force, lease, ...outputOptions },
  (o) =>
    withSettingsOneShot(o, (settings) =>
      Effect.flatMap(parseHandleArg(o.handle), (parsed) =>
        Effect.gen(function*() {
          yield* answer(yield* deleteJob(parsed, { lease: settings.queueRunner.lease, force: o.force }))
        }).pipe(Effect.provide(storageOnly(settings)))))
).pipe(
  Command.withDescription("Delete a job (refused while it may be running, unless --force)")
)

export const jobsCommand = Command.make("jobs").pipe(
  Command.withDescription("Inspect and repair stored jobs"),
  Command.withSubcommands([listCommand, showCommand, retryCommand, deleteCommand])
)
