/**
 * Operations on a function rather than on jobs — pause, resume, purge its dead jobs older than N —
 * the web console's second table beside `JOB_ACTIONS` (src/jobActions.ts), doing what
 * `garivini functions pause|resume` and `garivini jobs purge --dead --older-than` do.
 */
import { Duration, Effect, Option } from "effect"
import type { ShardOperationError } from "./errors.js"
import { Storage } from "./storage/Storage.js"

export interface FunctionActionInput {
  readonly funcname: string
  /** Seconds: only jobs that ended longer ago than this (purge). */
  readonly olderThan?: number | undefined
}

export interface FunctionAction {
  /** The name in URLs, forms and logs. */
  readonly name: string
  readonly label: string
  /** Whether it destroys data: asked for through a confirmation page, styled as danger. */
  readonly destructive: boolean
  /** Whether it needs `olderThan`. */
  readonly needsAge: boolean
  /** What the confirmation says (destructive actions only ask). */
  readonly confirm: (input: FunctionActionInput) => string
  /** Does it; says what was done. */
  readonly run: (input: FunctionActionInput) => Effect.Effect<string, ShardOperationError, Storage>
}

/** Seconds as the largest whole unit (`7d`, `12h`, `90s`), as `--older-than` takes them. */
export const ageText = (seconds: number): string => {
  for (const [unit, n] of [["w", 604800], ["d", 86400], ["h", 3600], ["m", 60]] as const) {
    if (seconds >= n && seconds % n === 0) return `${seconds / n}${unit}`
  }
  return `${seconds}s`
}

const pausing = (paused: boolean): FunctionAction => ({
  name: paused ? "pause" : "resume",
  label: paused ? "Pause" : "Resume",
  destructive: false,
  needsAge: false,
  confirm: (i) => paused ? `Pause ${i.funcname}?` : `Resume ${i.funcname}?`,
  run: (i) =>
    Effect.flatMap(Storage, (s) => s.flow.setControl(i.funcname, { paused })).pipe(
      Effect.as(`${i.funcname} ${paused ? "paused" : "resumed"} (every shard)`)
    )
})

export const FUNCTION_ACTIONS: ReadonlyArray<FunctionAction> = [
  pausing(true),
  pausing(false),
  {
    name: "purge-dead",
    label: "Purge dead",
    destructive: true,
    needsAge: true,
    confirm: (i) =>
      `Delete every dead job of ${i.funcname} that died more than ${
        ageText(i.olderThan ?? 0)
      } ago, on every shard? This cannot be undone.`,
    run: (i) =>
      Effect.flatMap(Storage, (s) => s.purgeEnded("dead", Duration.seconds(i.olderThan ?? 0), { funcname: i.funcname }))
        .pipe(
          Effect.map((n) => `deleted ${n} dead job(s) of ${i.funcname} older than ${ageText(i.olderThan ?? 0)}`)
        )
  }
]

export const functionActionNamed = (name: string): Option.Option<FunctionAction> =>
  Option.fromNullable(FUNCTION_ACTIONS.find((a) => a.name === name))
