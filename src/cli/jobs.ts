/** `garivini jobs list | show | dead | retry | cancel | delete | purge`: inspect and repair stored jobs. */
import { Args, Command, Options } from "@effect/cli"
import { Console, Data, Duration, Effect, Option } from "effect"
import { formatHandle, JOB_STATES, jobState as stateOf, nowSeconds, parseHandle, type StoredJobId } from "../Job.js"
import type { JobRecord, JobState } from "../Job.js"
import { Storage } from "../storage/Storage.js"
import { optionalInteger, optionalText, outputOptions, queueRunnerOptions, storageOptions } from "./config.js"
import { storageOnly, withSettingsOneShot } from "./shared.js"
import { cancelJob, deleteJob, retryJob } from "../jobActions.js"
import type { ActionOutcome, JobAction } from "../jobActions.js"

class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string; readonly cause?: unknown }> {}
class NotFound extends Data.TaggedError("NotFound")<{ readonly message: string }> {}
/** A repair that could run a job twice, or not stop it, refused without --force. */
class Refused extends Data.TaggedError("Refused")<{ readonly message: string }> {}

const preview = (bytes: Uint8Array) => {
  const clean = Buffer.from(bytes).toString("utf8").replace(/[^\x20-\x7e]/g, ".")
  return clean.length > 40 ? `${clean.slice(0, 37)}...` : clean
}

const isoTime = (t: number | null) => t === null ? null : new Date(t * 1000).toISOString()

const asJson = (job: JobRecord, now: number) => ({
  handle: formatHandle(job),
  funcname: job.funcname,
  state: stateOf(job, now),
  run_after: job.runAfter,
  failcount: job.failcount,
  flag: job.flag,
  uniqkey: job.uniqkey,
  coalesce: job.coalesce,
  arg: Buffer.from(job.arg).toString("base64"),
  last_error: job.lastError,
  last_error_at: job.lastErrorAt,
  last_error_attempt: job.lastErrorAttempt,
  ended: job.ended,
  ended_at: job.endedAt,
  leased_until: job.leasedUntil
})

/** The first line of a last error, cut for a table cell (the whole is in `jobs show`). */
const errorPreview = (error: string | null) => {
  if (error === null) return ""
  const line = error.split("\n")[0]!
  return line.length > 60 ? `${line.slice(0, 57)}...` : line
}

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

const functionFilter = optionalText("function", "Only this function")
const shardFilter = optionalInteger("shard", "Only this shard (dbid)")
const limit = Options.integer("limit").pipe(
  Options.withDefault(100),
  Options.withDescription("Page size (default 100)")
)
const after = optionalText("after", "Continue after this dbid:jobid")

interface PageFlags {
  readonly function: Option.Option<string>
  readonly shard: Option.Option<number>
  readonly limit: number
  readonly after: Option.Option<string>
  readonly json: boolean
}

/** One page of jobs in `state`: JSON lines, or a table and a line saying how many (and how to go on). */
const printPage = (
  o: PageFlags,
  state: JobState | undefined,
  noun: string,
  header: ReadonlyArray<string>,
  row: (job: JobRecord, now: number) => ReadonlyArray<string>
) =>
  Effect.gen(function*() {
    const from = Option.isSome(o.after) ? yield* parseHandleArg(o.after.value) : undefined
    const storage = yield* Storage
    const jobs = yield* storage.list({
      funcname: Option.getOrUndefined(o.function),
      state,
      dbid: Option.getOrUndefined(o.shard),
      limit: o.limit,
      after: from
    })
    const now = yield* nowSeconds
    if (o.json)
      return yield* Effect.forEach(jobs, (job) => Console.log(JSON.stringify(asJson(job, now))), { discard: true })
    yield* printTable(header, jobs.map((j) => row(j, now)))
    yield* Console.log(
      `${jobs.length} ${noun}(s)${
        jobs.length === o.limit ? ` (more: --after ${formatHandle(jobs[jobs.length - 1]!)})` : ""
      }`
    )
  })

export const listCommand = Command.make("list", {
  ...storageOptions,
  function: functionFilter,
  state: Options.choice("state", JOB_STATES).pipe(
    Options.optional,
    Options.withDescription(
      "due; scheduled (later, never run); retrying (later, after a failure); dispatched (leased by our dispatcher); running (a worker heartbeats it); never; dead (attempts used up); cancelled"
    )
  ),
  shard: shardFilter,
  limit,
  after,
  json,
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    printPage(
      o,
      Option.getOrUndefined(o.state),
      "job",
      ["HANDLE", "FUNCTION", "STATE", "RUN AFTER", "FAILS", "FLAG", "UNIQKEY", "ARG"],
      (j, now) => [
        formatHandle(j),
        j.funcname,
        stateOf(j, now),
        new Date(j.runAfter * 1000).toISOString(),
        String(j.failcount),
        j.flag,
        j.uniqkey ?? "",
        preview(j.arg)
      ]
    ).pipe(Effect.provide(storageOnly(settings))))).pipe(
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
          const time = (t: number | null) => t === null ? "-" : `${t} (${isoTime(t)})`
          yield* printTable(["FIELD", "VALUE"], [
            ["handle", formatHandle(j)],
            ["funcname", j.funcname],
            ["state", stateOf(j, now)],
            ["run_after", time(j.runAfter)],
            ["failcount", `${j.failcount} (failures so far)`],
            ["flag", j.flag],
            ["uniqkey", j.uniqkey ?? "(none)"],
            ["coalesce", j.coalesce ?? "(none)"],
            ["arg", `${j.arg.length} bytes: ${preview(j.arg)}`],
            ["leased_until", time(j.leasedUntil)],
            ["ended", j.ended ?? "-"],
            ["ended_at", time(j.endedAt)],
            ["last_error_at", time(j.lastErrorAt)],
            ["last_error_attempt", j.lastErrorAttempt === null ? "-" : String(j.lastErrorAttempt)]
          ])
          // Last: it may span lines (a stack trace); stored bounded, control characters escaped.
          yield* Console.log(`last_error:${j.lastError === null ? " -" : `\n${j.lastError}`}`)
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
  function: optionalText("function", "Make every `never` job of this function due (with --dead: its dead jobs)"),
  dead: Options.boolean("dead").pipe(
    Options.withDescription("Make every dead job due (of --function only, if given), failcount 0; prints how many")
  ),
  force,
  lease,
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    Effect.gen(function*() {
      const byHandle = Option.isSome(o.handle)
      if (byHandle === (Option.isSome(o.function) || o.dead)) {
        return yield* Effect.fail(
          new UsageError({
            message: "jobs retry takes a dbid:jobid, or --function NAME (its `never` jobs), or --dead [--function NAME]"
          })
        )
      }
      return Option.isSome(o.handle) ? Option.some(yield* parseHandleArg(o.handle.value)) : Option.none<StoredJobId>()
    }).pipe(Effect.flatMap((parsed) =>
      Effect.gen(function*() {
        const storage = yield* Storage
        if (Option.isNone(parsed) && o.dead) {
          // Dead jobs run nowhere (run_after never, no lease): none is running.
          const funcname = Option.getOrUndefined(o.function)
          const n = yield* storage.retryDead({ funcname })
          return yield* Console.log(`made ${n} dead job(s)${funcname === undefined ? "" : ` of ${funcname}`} due`)
        }
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
      "Make a job due now (refused while it may be running, unless --force; a dead one gets its attempts back), every never job of a function, or every dead job (--dead)"
    )
  )

export const deadCommand = Command.make("dead", {
  ...storageOptions,
  function: functionFilter,
  shard: shardFilter,
  limit,
  after,
  json,
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    printPage(
      o,
      "dead",
      "dead job",
      ["HANDLE", "FUNCTION", "ATTEMPTS", "DIED", "LAST ERROR"],
      (j) => [formatHandle(j), j.funcname, String(j.failcount), isoTime(j.endedAt) ?? "-", errorPreview(j.lastError)]
    ).pipe(Effect.provide(storageOnly(settings))))).pipe(
    Command.withDescription("List dead jobs (attempts used up) with their last error")
  )

/** `7d`, `12h`, `30m`, `90s` or a number of seconds. */
const DURATION_UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }
export const parseAge = (text: string): Option.Option<number> => {
  const m = /^(\d+)([smhdw]?)$/.exec(text.trim())
  return m === null ? Option.none() : Option.some(Number(m[1]) * DURATION_UNITS[m[2] === "" ? "s" : m[2]!]!)
}

export const purgeCommand = Command.make("purge", {
  ...storageOptions,
  dead: Options.boolean("dead").pipe(Options.withDescription("Delete dead jobs")),
  cancelled: Options.boolean("cancelled").pipe(Options.withDescription("Delete cancelled jobs")),
  olderThan: Options.text("older-than").pipe(
    Options.withDescription("Only those that ended longer ago than this: 7d, 12h, 30m, 90s or seconds")
  ),
  function: optionalText("function", "Only this function"),
  shard: optionalInteger("shard", "Only this shard (dbid)"),
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    Effect.gen(function*() {
      if (o.dead === o.cancelled) {
        return yield* Effect.fail(
          new UsageError({
            message: "jobs purge takes --dead or --cancelled (one of them): it deletes only ended jobs"
          })
        )
      }
      const age = parseAge(o.olderThan)
      if (Option.isNone(age)) {
        return yield* Effect.fail(
          new UsageError({ message: `--older-than ${JSON.stringify(o.olderThan)} is not 7d, 12h, 30m, 90s or seconds` })
        )
      }
      return age.value
    }).pipe(Effect.flatMap((seconds) =>
      Effect.gen(function*() {
        const ended = o.dead ? "dead" : "cancelled"
        const funcname = Option.getOrUndefined(o.function)
        const n = yield* Effect.flatMap(
          Storage,
          (s) => s.purgeEnded(ended, Duration.seconds(seconds), { funcname, dbid: Option.getOrUndefined(o.shard) })
        )
        yield* Console.log(`deleted ${n} ${ended} job(s)${funcname === undefined ? "" : ` of ${funcname}`}`)
      }).pipe(Effect.provide(storageOnly(settings)))
    )))).pipe(
    Command.withDescription("Delete dead or cancelled jobs that ended longer ago than --older-than")
  )

/** `jobs NAME D:J [--force]`: one job through a guarded action of jobActions.ts. */
const guardedCommand = <Name extends string>(name: Name, run: JobAction["run"], description: string) =>
  Command.make(
    name,
    { ...storageOptions, handle: handleArg, force, lease, ...outputOptions },
    (o) =>
      withSettingsOneShot(o, (settings) =>
        Effect.flatMap(parseHandleArg(o.handle), (parsed) =>
          Effect.gen(function*() {
            yield* answer(yield* run(parsed, { lease: settings.queueRunner.lease, force: o.force }))
          }).pipe(Effect.provide(storageOnly(settings)))))
  ).pipe(Command.withDescription(description))

export const deleteCommand = guardedCommand(
  "delete",
  deleteJob,
  "Delete a job (refused while it may be running, unless --force)"
)

export const cancelCommand = guardedCommand(
  "cancel",
  cancelJob,
  "Cancel a job: kept as cancelled, never run again; a running one (heartbeating) is interrupted at its next heartbeat (refused while it may be in a job server or a worker without heartbeats, unless --force)"
)

export const jobsCommand = Command.make("jobs").pipe(
  Command.withDescription("Inspect and repair stored jobs"),
  Command.withSubcommands([
    listCommand,
    showCommand,
    deadCommand,
    retryCommand,
    cancelCommand,
    deleteCommand,
    purgeCommand
  ])
)
