/**
 * `garivini status`: per shard and function, the jobs in each state (due, scheduled, retrying,
 * dispatched, running, never, dead, cancelled), the oldest due job's age, and gearmand's queued / running /
 * workers for that function (summed over servers: the GM columns).
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either } from "effect"
import { nowSeconds } from "../Job.js"
import { Storage } from "../storage/Storage.js"
import { queueFigures, storedCounts } from "../overview.js"
import { connectionOptions, outputOptions } from "./config.js"
import { formatRate } from "../storage/flow.js"
import { controlJson, scheduleJson } from "./flow.js"
import { printTable } from "./jobs.js"
import { servicesLayer, withSettingsOneShot } from "./shared.js"

export const statusCommand = Command.make("status", {
  ...connectionOptions,
  json: Options.boolean("json").pipe(Options.withDescription("[output] The answer as JSON")),
  ...outputOptions
}, (o) =>
  withSettingsOneShot(o, (settings) =>
    Effect.gen(function*() {
      const { counts, unavailable } = yield* storedCounts
      const { byFunction: queue, error: gearmandError } = yield* queueFigures
      const now = yield* nowSeconds
      // Flow control, as the home shard holds it (an older schema without its tables: none shown).
      const storage = yield* Storage
      const controls = yield* Effect.either(storage.flow.controls(storage.flow.home))
      const schedules = yield* Effect.either(storage.flow.schedules)
      const flow = {
        controls: Either.getOrElse(controls, () => []).map(controlJson),
        schedules: Either.getOrElse(schedules, () => []).map(scheduleJson)
      }
      const rows = counts.map((c) => ({
        shard: c.dbid,
        function: c.funcname,
        due: c.due,
        scheduled: c.scheduled,
        retrying: c.retrying,
        dispatched: c.dispatched,
        running: c.running,
        never: c.never,
        dead: c.dead,
        cancelled: c.cancelled,
        oldest_due_age: c.oldestDue === null ? null : Math.max(0, now - c.oldestDue),
        gearmand_queued: queue.get(c.funcname) === undefined
          ? null
          : queue.get(c.funcname)!.total - queue.get(c.funcname)!.running,
        gearmand_running: queue.get(c.funcname)?.running ?? null,
        gearmand_workers: queue.get(c.funcname)?.workers ?? null
      }))
      if (o.json)
        return yield* Console.log(
          JSON.stringify({
            functions: rows,
            unavailable_shards: unavailable,
            gearmand_error: gearmandError,
            flow_control: flow.controls,
            schedules: flow.schedules
          })
        )
      const cell = (v: number | null) => (v === null ? "-" : String(v))
      yield* printTable(
        [
          "SHARD",
          "FUNCTION",
          "DUE",
          "SCHEDULED",
          "RETRYING",
          "DISPATCHED",
          "RUNNING",
          "NEVER",
          "DEAD",
          "CANCELLED",
          "OLDEST DUE",
          "GM QUEUED",
          "GM RUNNING",
          "GM WORKERS"
        ],
        rows.map((
          r
        ) => [
          String(r.shard),
          r.function,
          String(r.due),
          String(r.scheduled),
          String(r.retrying),
          String(r.dispatched),
          String(r.running),
          String(r.never),
          String(r.dead),
          String(r.cancelled),
          r.oldest_due_age === null ? "-" : `${r.oldest_due_age}s`,
          cell(r.gearmand_queued),
          cell(r.gearmand_running),
          cell(r.gearmand_workers)
        ])
      )
      for (const c of flow.controls) {
        const rate = c.rate_limit === null
          ? ""
          : `rate limit ${
            formatRate({ ...c.rate_limit, periodMs: c.rate_limit.period_ms })
          } (burst ${c.rate_limit.burst})`
        yield* Console.log(
          `function ${c.function}: ${[c.paused ? "paused" : "", rate].filter((x) => x !== "").join(", ")}`
        )
      }
      for (const r of flow.schedules) {
        yield* Console.log(`schedule ${r.name}: ${r.cron} -> ${r.function}, next slot ${r.next_slot}`)
      }
      for (const u of unavailable) yield* Console.log(`shard ${u.shard} unavailable: ${u.error}`)
      if (gearmandError !== null) yield* Console.log(`gearmand unavailable: ${gearmandError}`)
    }).pipe(Effect.provide(servicesLayer(settings))))).pipe(
    Command.withDescription("Jobs per shard and function, with gearmand's queue figures")
  )
