/**
 * Recurring schedules: cron expressions (seconds allowed, a time zone) parsed by `croner`, each
 * stored as a row with the next slot to enqueue (on the home shard: storage/flow.ts). Every
 * QueueRunner runs this loop; whichever finds a slot due first moves the row's next slot with a
 * compare-and-set and stores the slot's job in the same transaction (unique key
 * `schedule:NAME:SLOT` as a second guard), so each slot is enqueued once however many run it.
 *
 * A slot found due more than `grace` late was missed (everything was down, or the database slow):
 * `skip` enqueues nothing for missed slots; `run-once` enqueues one job for all of them (keyed by
 * the first missed slot), then the slots that are on time.
 */
import { Cron } from "croner"
import { Clock, Data, Duration, Effect, Either, Metric, Schedule } from "effect"
import type { Layer } from "effect"
import type { NewJob } from "../Job.js"
import type { ShardOperationError } from "../errors.js"
import { slotKey } from "../storage/flow.js"
import type { MissedPolicy, ScheduleRow } from "../storage/flow.js"
import { Storage } from "../storage/Storage.js"
import type { StorageShape } from "../storage/Storage.js"
import * as Defaults from "./defaults.js"
import * as Metrics from "./metrics.js"
import { roleLayer } from "./supervise.js"
import type { Supervision } from "./supervise.js"

/** A schedule's definition, as the config file and `garivini schedules add` give it. */
export interface ScheduleSpec {
  readonly name: string
  readonly cron: string
  readonly funcname: string
  readonly arg?: string | null | undefined
  /** IANA time zone (default UTC). */
  readonly timezone?: string | null | undefined
  readonly missed?: MissedPolicy | undefined
}

export class InvalidScheduleSpec extends Data.TaggedError("InvalidScheduleSpec")<{
  readonly name: string
  readonly reason: string
}> {
  override get message(): string {
    return `schedule ${JSON.stringify(this.name)}: ${this.reason}`
  }
}

/** Slots enqueued one by one in one advance, at most (more on-time slots than this: the rest are missed). */
const MAX_SLOTS_PER_ADVANCE = 100
const NAME_MAX_CHARS = 150

/** The cron expression as croner reads it: 5 fields, or 6 with seconds first. */
export const parseCron = (spec: Pick<ScheduleSpec, "name" | "cron" | "timezone">) =>
  Either.try({
    try: () => {
      const cron = new Cron(spec.cron, { paused: true, mode: "5-or-6-parts", timezone: spec.timezone ?? "UTC" })
      // An unknown time zone is only found when a date is computed.
      if (cron.nextRun(new Date(0)) === null) throw new Error("it never fires")
      return cron
    },
    catch: (e) => new InvalidScheduleSpec({ name: spec.name, reason: e instanceof Error ? e.message : String(e) })
  })

/** The first slot strictly after `afterSec` (unix seconds), or null when there is none. */
const slotAfter = (cron: Cron, afterSec: number): number | null => {
  const next = cron.nextRun(new Date(afterSec * 1000 + 999))
  return next === null ? null : Math.floor(next.getTime() / 1000)
}

/** Checks a spec and makes its row: the first slot is the next one after `nowSec`. */
export const rowOf = (spec: ScheduleSpec, nowSec: number): Either.Either<ScheduleRow, InvalidScheduleSpec> =>
  Either.gen(function*() {
    const bad = (reason: string) => Either.left(new InvalidScheduleSpec({ name: spec.name, reason }))
    if (!/^[A-Za-z0-9_.:-]+$/.test(spec.name) || spec.name.length > NAME_MAX_CHARS) {
      return yield* bad(`a name is 1 to ${NAME_MAX_CHARS} letters, digits, '_', '.', ':' or '-'`)
    }
    const cron = yield* parseCron(spec)
    const first = slotAfter(cron, nowSec)
    if (first === null) return yield* bad("it has no future slot")
    return {
      name: spec.name,
      cron: spec.cron,
      timezone: spec.timezone ?? null,
      funcname: spec.funcname,
      arg: spec.arg ?? null,
      missed: spec.missed ?? "skip",
      nextSlot: first
    }
  })

/** What one advance of a schedule does: the slots to enqueue and the new next slot. */
export interface Advance {
  /** Slots enqueued, each as its own job (run_after = the slot). */
  readonly slots: ReadonlyArray<number>
  /** The first missed slot when `run-once` enqueues one job for the missed ones. */
  readonly missedRun: number | null
  /** How many slots were missed (skipped, or folded into `missedRun`); an estimate past the on-time window. */
  readonly missed: boolean
  readonly next: number
}

/**
 * The pure rule: from the row's next slot up to `nowSec`, slots later than `nowSec - graceSec`
 * are on time, earlier ones missed. Undefined when nothing is due (or the cron has no more slots).
 */
export const advance = (row: ScheduleRow, cron: Cron, nowSec: number, graceSec: number): Advance | undefined => {
  if (row.nextSlot > nowSec) return undefined
  const cutoff = nowSec - graceSec
  // The first on-time slot: at or after the cutoff (computed, not walked to: a long outage of an
  // every-second schedule holds millions of missed slots).
  let slot: number | null = row.nextSlot >= cutoff ? row.nextSlot : slotAfter(cron, cutoff - 1)
  const missed = row.nextSlot < cutoff && (slot === null || row.nextSlot < slot)
  const slots: Array<number> = []
  while (slot !== null && slot <= nowSec && slots.length < MAX_SLOTS_PER_ADVANCE) {
    slots.push(slot)
    slot = slotAfter(cron, slot)
  }
  if (slot !== null && slot <= nowSec) slot = slotAfter(cron, nowSec)
  if (slot === null) return undefined
  return { slots, missedRun: missed && row.missed === "run-once" ? row.nextSlot : null, missed, next: slot }
}

/** The jobs of one advance. */
export const jobsOf = (row: ScheduleRow, step: Advance, nowSec: number): ReadonlyArray<NewJob> => {
  const job = (slot: number, runAfter: number): NewJob => ({
    funcname: row.funcname,
    arg: row.arg ?? "",
    uniqkey: slotKey(row.name, slot),
    runAfter
  })
  const jobs = step.slots.map((slot) => job(slot, slot))
  if (step.missedRun !== null) jobs.unshift(job(step.missedRun, nowSec))
  return jobs
}

export interface SchedulerOptions {
  /** How often due slots are looked for (default 1 s). */
  readonly tick?: Duration.DurationInput | undefined
  /** A slot found due more than this late is missed (default 2 s). */
  readonly grace?: Duration.DurationInput | undefined
}

export interface TickReport {
  /** Schedules this runner advanced (another runner may have advanced the others). */
  readonly advanced: ReadonlyArray<{ readonly name: string; readonly jobs: number; readonly missed: boolean }>
}

/** One look at every schedule: each due one advanced (if this runner wins its compare-and-set). */
export const tick = (
  storage: StorageShape,
  graceSec: number
): Effect.Effect<TickReport, ShardOperationError> =>
  Effect.gen(function*() {
    const nowSec = Math.floor((yield* Clock.currentTimeMillis) / 1000)
    const rows = yield* storage.flow.schedules
    const advanced: Array<{ readonly name: string; readonly jobs: number; readonly missed: boolean }> = []
    for (const row of rows) {
      if (row.nextSlot > nowSec) continue
      const cron = parseCron(row)
      if (Either.isLeft(cron)) {
        yield* Effect.logWarning(`schedule skipped: ${cron.left.message}`)
        continue
      }
      const step = advance(row, cron.right, nowSec, graceSec)
      if (step === undefined) continue
      const jobs = jobsOf(row, step, nowSec)
      const won = yield* storage.flow.advanceSchedule(row.name, row.nextSlot, step.next, jobs).pipe(
        Effect.catchTag("InvalidJob", (e) =>
          // A job that cannot be stored (a bad function name written by hand) must not stop the
          // schedule forever: the slot is passed over, said loudly.
          Effect.zipRight(
            Effect.logError(`schedule ${row.name}: its job is invalid, slot passed over: ${e.message}`),
            storage.flow.advanceSchedule(row.name, row.nextSlot, step.next, [])
          ))
      )
      if (!won) continue
      yield* Metric.incrementBy(Metric.tagged(Metrics.scheduledJobs, "schedule", row.name), jobs.length)
      if (step.missed) {
        yield* Effect.logInfo(
          `schedule ${row.name}: slots missed since ${new Date(row.nextSlot * 1000).toISOString()} (${row.missed})`
        )
      }
      advanced.push({ name: row.name, jobs: jobs.length, missed: step.missed })
    }
    return { advanced }
  })

/** The schedule loop: a tick on a fixed schedule; a failed tick is logged and the loop goes on. */
export const run = (options: SchedulerOptions = {}): Effect.Effect<never, never, Storage> =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const graceSec = Duration.toSeconds(Duration.decode(options.grace ?? Defaults.flow.scheduleGrace))
    let failing = false
    const once = tick(storage, graceSec).pipe(
      Effect.tap(() => (failing ? Effect.logInfo("schedules readable again") : Effect.void)),
      Effect.tap(() => Effect.sync(() => (failing = false))),
      Effect.catchAll((e) =>
        Effect.zipRight(
          failing ? Effect.void : Effect.logWarning(`schedules unavailable: ${e.message}`),
          Effect.sync(() => (failing = true))
        )
      )
    )
    return yield* Effect.repeat(once, Schedule.fixed(options.tick ?? Defaults.flow.scheduleTick)).pipe(
      Effect.zipRight(Effect.never)
    )
  }).pipe(Effect.annotateLogs({ role: "Scheduler" }))

/** The schedule loop as a Layer, supervised (supervise.ts) for the life of the layer. */
export const layer = (options: SchedulerOptions = {}): Layer.Layer<never, never, Storage | Supervision> =>
  roleLayer("Scheduler", run(options))

/** Creates or replaces schedules (the config file's, or `garivini schedules add`). */
export const define = (specs: ReadonlyArray<ScheduleSpec>) =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const nowSec = Math.floor((yield* Clock.currentTimeMillis) / 1000)
    const rows: Array<ScheduleRow> = []
    for (const spec of specs) rows.push(yield* rowOf(spec, nowSec))
    const existing = new Map((yield* storage.flow.schedules).map((r) => [r.name, r] as const))
    for (const row of rows) {
      const old = existing.get(row.name)
      // Unchanged: keep its next slot (a restart must not move a schedule's slots).
      if (
        old !== undefined && old.cron === row.cron && old.timezone === row.timezone && old.funcname === row.funcname &&
        old.arg === row.arg && old.missed === row.missed
      ) continue
      yield* storage.flow.putSchedule(row)
    }
    return rows
  })
