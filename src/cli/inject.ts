/** `garivini inject`: stores N test jobs (the original `gv_inject`, direct mode). */
import { Command, Options } from "@effect/cli"
import { Clock, Console, Effect, Option } from "effect"
import * as Client from "../roles/Client.js"
import { layer as storageLayer } from "../storage/Storage.js"
import { dbOption, reportFailure, resolveShards } from "./shared.js"

const options = {
  db: dbOption,
  count: Options.integer("count").pipe(Options.withDefault(1), Options.withDescription("How many jobs")),
  function: Options.text("function").pipe(Options.withDefault("foo"), Options.withDescription("The Gearman function")),
  arg: Options.text("arg").pipe(Options.optional, Options.withDescription("The payload (default: hello: <unix time>)"))
}

export const injectCommand = Command.make("inject", options, (o) =>
  reportFailure(Effect.gen(function*() {
    if (o.count < 1) return yield* Effect.fail({ message: "invalid option --count: must be at least 1" })
    const shards = yield* resolveShards(o.db)
    const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
    const arg = Option.getOrElse(o.arg, () => `hello: ${now}`)
    const outcomes = yield* Client.insertJobs(Array.from({ length: o.count }, () => ({ funcname: o.function, arg }))).pipe(
      Effect.provide(storageLayer({ shards }))
    )
    yield* Console.log(`stored ${outcomes.length} job(s) for ${o.function}`)
  }))).pipe(Command.withDescription("Store test jobs directly in the database"))
