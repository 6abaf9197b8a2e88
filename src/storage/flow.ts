/**
 * Flow control as stored (migrations 0003, 0005): per-function controls (pause, rate limit,
 * concurrency limit), the rate
 * limit's token bucket and recurring schedules. The shapes and the pure arithmetic live here,
 * once, for the SQL and memory shards; the rules of who reads and writes what are in
 * docs/flow-control.md.
 */
import { Schema } from "effect"
import { LenientInt } from "../Job.js"

/** At most `count` jobs started per `periodMs`, with bursts of at most `burst`. */
export interface RateLimit {
  readonly count: number
  readonly periodMs: number
  readonly burst: number
}

/** One function's controls (a function with none has no row). */
export interface FunctionControl {
  readonly funcname: string
  readonly paused: boolean
  readonly rate: RateLimit | null
  /** At most this many of its jobs leased (dispatched or running) at once, deployment-wide (migration 0005). */
  readonly concurrency: number | null
}

/** A change to one function's controls: absent fields keep their value; `null` clears a limit. */
export interface ControlPatch {
  readonly paused?: boolean | undefined
  readonly rate?: RateLimit | null | undefined
  readonly concurrency?: number | null | undefined
}

/** The largest concurrency limit (a row lock and a count per claim: more would be no limit). */
export const MAX_CONCURRENCY = 1_000_000

/** A concurrency limit as the user gives it, or why it is not one. */
export const concurrencyProblem = (n: number): string | undefined =>
  Number.isSafeInteger(n) && n >= 1 && n <= MAX_CONCURRENCY
    ? undefined
    : `concurrency ${n} is not an integer in [1, ${MAX_CONCURRENCY}]`

/** Applies a patch; undefined when the result has nothing set (its row is deleted). */
export const patched = (
  funcname: string,
  current: FunctionControl | undefined,
  patch: ControlPatch
): FunctionControl | undefined => {
  const paused = patch.paused ?? current?.paused ?? false
  const rate = patch.rate === undefined ? current?.rate ?? null : patch.rate
  const concurrency = patch.concurrency === undefined ? current?.concurrency ?? null : patch.concurrency
  return !paused && rate === null && concurrency === null ? undefined : { funcname, paused, rate, concurrency }
}

/** A token bucket's stored state: tokens (fractional) as of `refilledMs`. */
export interface Bucket {
  readonly tokens: number
  readonly refilledMs: number
}

/** Tolerance for floating-point refills (0.9999999 tokens is one token). */
const EPSILON = 1e-9

/**
 * Refills by the time elapsed since the last refill (a clock that went back refills nothing),
 * up to the burst, then takes `want` tokens or as many as there are (whole ones), or gives
 * `-want` back (a negative `want`: tokens taken and not used).
 */
export const takeTokens = (
  bucket: Bucket | undefined,
  rate: RateLimit,
  nowMs: number,
  want: number
): { readonly bucket: Bucket; readonly taken: number } => {
  const start = bucket ?? { tokens: rate.burst, refilledMs: nowMs }
  const elapsed = Math.max(0, nowMs - start.refilledMs)
  const available = Math.min(rate.burst, start.tokens + (elapsed * rate.count) / rate.periodMs)
  const refilledMs = Math.max(start.refilledMs, nowMs)
  if (want <= 0) return { bucket: { tokens: Math.min(rate.burst, available - want), refilledMs }, taken: 0 }
  const taken = Math.max(0, Math.min(want, Math.floor(available + EPSILON)))
  return { bucket: { tokens: available - taken, refilledMs }, taken }
}

/** Text like `50/s`, `600/min`, `10/500ms`, `3/2s`; `burst` defaults to the rate per second (at least 1). */
export const parseRate = (text: string, burst?: number): RateLimit | string => {
  const m = /^\s*(\d+)\s*\/\s*(\d*)\s*(ms|s|sec|m|min|h|hour)\s*$/i.exec(text)
  if (m === null) return `rate ${JSON.stringify(text)} is not N/UNIT (50/s, 600/min, 10/500ms, 1000/h)`
  const count = Number(m[1])
  const times = m[2] === "" ? 1 : Number(m[2])
  const unit = m[3]!.toLowerCase()
  const unitMs = unit === "ms" ? 1 : unit === "s" || unit === "sec" ? 1000 : unit.startsWith("m") ? 60_000 : 3_600_000
  const periodMs = times * unitMs
  if (!Number.isSafeInteger(count) || count < 1 || count > 1_000_000) return `rate count ${m[1]} is not in [1, 1000000]`
  if (!Number.isSafeInteger(periodMs) || periodMs < 1 || periodMs > 86_400_000) {
    return `rate period of ${text} is not between 1 ms and 24 h`
  }
  const b = burst ?? Math.max(1, Math.round((count * 1000) / periodMs))
  if (!Number.isSafeInteger(b) || b < 1 || b > 1_000_000) return `burst ${b} is not an integer in [1, 1000000]`
  return { count, periodMs, burst: b }
}

/** A rate as the user writes it: `50/s`, `10/500ms` (burst shown apart). */
export const formatRate = (rate: RateLimit): string => {
  const p = rate.periodMs
  const period = p % 3_600_000 === 0
    ? `${p === 3_600_000 ? "" : p / 3_600_000}h`
    : p % 60_000 === 0
    ? `${p === 60_000 ? "" : p / 60_000}min`
    : p % 1000 === 0
    ? `${p === 1000 ? "" : p / 1000}s`
    : `${p}ms`
  return `${rate.count}/${period}`
}

export type MissedPolicy = "skip" | "run-once"
export const MISSED_POLICIES: ReadonlyArray<MissedPolicy> = ["skip", "run-once"]

/** A recurring schedule as stored: the slot to enqueue next (unix seconds). */
export interface ScheduleRow {
  readonly name: string
  readonly cron: string
  /** IANA time zone; null: UTC. */
  readonly timezone: string | null
  readonly funcname: string
  readonly arg: string | null
  readonly missed: MissedPolicy
  readonly nextSlot: number
}

/** The unique key of a schedule's job for one slot: the second guard of "once per slot". */
export const slotKey = (name: string, slot: number): string => `schedule:${name}:${slot}`

// -- rows, decoded at the edge --------------------------------------------------------------------

const NullableInt = Schema.NullOr(LenientInt)

export const ControlRow = Schema.Struct({
  funcname: Schema.String,
  paused: LenientInt,
  rate_count: NullableInt,
  rate_period_ms: NullableInt,
  rate_burst: NullableInt,
  // Migration 0005's column: absent from the row on a database without it.
  concurrency: Schema.optional(NullableInt)
})

export const controlFromRow = (row: typeof ControlRow.Type): FunctionControl => ({
  funcname: row.funcname,
  paused: row.paused !== 0,
  rate: row.rate_count === null || row.rate_period_ms === null || row.rate_burst === null
    ? null
    : { count: row.rate_count, periodMs: row.rate_period_ms, burst: row.rate_burst },
  concurrency: row.concurrency ?? null
})

export const BucketRow = Schema.Struct({
  tokens: Schema.Union(Schema.Number, Schema.NumberFromString),
  refilled_ms: LenientInt
})

const TextOrBytes = Schema.Union(
  Schema.String,
  Schema.transform(Schema.Uint8ArrayFromSelf, Schema.String, {
    strict: true,
    decode: (b) => Buffer.from(b).toString("utf8"),
    encode: (s) => Buffer.from(s, "utf8")
  })
)

export const ScheduleDbRow = Schema.Struct({
  name: TextOrBytes,
  cron: TextOrBytes,
  timezone: Schema.NullOr(TextOrBytes),
  funcname: TextOrBytes,
  arg: Schema.NullOr(TextOrBytes),
  missed: Schema.Literal("skip", "run-once"),
  next_slot: LenientInt
})

export const scheduleFromRow = (row: typeof ScheduleDbRow.Type): ScheduleRow => ({
  name: row.name,
  cron: row.cron,
  timezone: row.timezone,
  funcname: row.funcname,
  arg: row.arg,
  missed: row.missed,
  nextSlot: row.next_slot
})
