/** `garivini jobs list`: the stored jobs, filtered and paged. */
import { Command, Options } from "@effect/cli"
import { Clock, Console, Effect, Layer, Option } from "effect"
import { formatHandle, NEVER, parseHandle } from "../Job.js"
import type { Job } from "../Job.js"
import { Storage, layer as storageLayer } from "../storage/Storage.js"
import { dbOption, reportFailure, resolveShards } from "./shared.js"

const stateOf = (job: Job, now: number) => job.runAfter <= now ? "due" : job.runAfter >= NEVER ? "never" : "scheduled"

const preview = (bytes: Uint8Array) => {
  const text = Buffer.from(bytes).toString("utf8")
  const clean = text.replace(/[^\x20-\x7e]/g, ".")
  return clean.length > 40 ? `${clean.slice(0, 37)}...` : clean
}

const listOptions = {
  db: dbOption,
  function: Options.text("function").pipe(Options.optional, Options.withDescription("Only this function")),
  state: Options.choice("state", ["due", "scheduled", "never"]).pipe(Options.optional),
  shard: Options.integer("shard").pipe(Options.optional, Options.withDescription("Only this shard (dbid)")),
  limit: Options.integer("limit").pipe(Options.withDefault(100)),
  after: Options.text("after").pipe(Options.optional, Options.withDescription("Continue after this dbid:jobid")),
  json: Options.boolean("json").pipe(Options.withDescription("One JSON object per line"))
}

const listCommand = Command.make("list", listOptions, (o) =>
  reportFailure(Effect.gen(function*() {
    const after = Option.isSome(o.after) ? yield* parseHandle(o.after.value) : undefined
    const storage = yield* Storage
    const jobs = yield* storage.list({
      funcname: Option.getOrUndefined(o.function),
      state: Option.getOrUndefined(o.state),
      dbid: Option.getOrUndefined(o.shard),
      limit: o.limit,
      after
    })
    const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
    if (o.json) {
      for (const job of jobs) {
        yield* Console.log(JSON.stringify({
          handle: formatHandle(job),
          funcname: job.funcname,
          state: stateOf(job, now),
          run_after: job.runAfter,
          failcount: job.failcount,
          flag: job.flag,
          uniqkey: job.uniqkey,
          arg: Buffer.from(job.arg).toString("base64")
        }))
      }
      return
    }
    const rows = jobs.map((j) => [formatHandle(j), j.funcname, stateOf(j, now), new Date(j.runAfter * 1000).toISOString(), String(j.failcount), j.flag, j.uniqkey ?? "", preview(j.arg)])
    const header = ["HANDLE", "FUNCTION", "STATE", "RUN AFTER", "FAILS", "FLAG", "UNIQKEY", "ARG"]
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
    for (const row of [header, ...rows]) yield* Console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd())
    yield* Console.log(`${jobs.length} job(s)${jobs.length === o.limit ? ` (more: --after ${formatHandle(jobs[jobs.length - 1]!)})` : ""}`)
  }).pipe(Effect.provide(Layer.unwrapEffect(Effect.map(resolveShards(o.db), (shards) => storageLayer({ shards }))))))).pipe(Command.withDescription("List stored jobs"))

export const jobsCommand = Command.make("jobs").pipe(
  Command.withDescription("Inspect stored jobs"),
  Command.withSubcommands([listCommand])
)
