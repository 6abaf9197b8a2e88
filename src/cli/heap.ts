/**
 * The heap policy of the commands that run roles (`queue-runner`, `injector`, `controller`,
 * `run`, `up`).
 *
 * A role's live heap is small and flat (≈ 25 MB, nearly all of it loaded code), but a steady
 * share of the short-lived objects each job goes through (the submit path's Effect objects, some
 * of them pretenured by V8) survives a scavenge and dies in the old generation. V8 lets the old generation grow to about 4× the live heap before it marks
 * and compacts, so a QueueRunner moving 100,000 jobs peaked near 200 MB RSS while ≈ 25 MB of it
 * was alive (docs/performance.md, "Runner memory, 2026-11-24"). A fixed growing factor of 1.5
 * has the heap marked at ≈ 40–45 MB instead of ≈ 100 MB (peak RSS ≈ 130–140 MB); the price is a
 * mark-compact (≈ 10 ms, mostly incremental) about every second under full load, which stayed
 * within the benchmark's run-to-run noise.
 *
 * `--heap-growing-percent` is one of the few V8 settings read on every collection, so it can be
 * set once the process runs (`v8.setFlagsFromString`); the young generation's size cannot (it is
 * fixed when the heap is set up): `NODE_OPTIONS=--max-semi-space-size=4` saves ≈ 25 MB more.
 * A value given on the command line or in NODE_OPTIONS wins.
 */
import { setFlagsFromString } from "node:v8"
import { Effect } from "effect"

/** The old generation may grow to 1 + this/100 times what survived the last mark-compact. */
export const ROLE_HEAP_GROWING_PERCENT = 50

const FLAG = /^--heap[-_]growing[-_]percent(=|$)/

/** Whether the process was started with its own growing factor. */
export const heapGrowingGiven = (execArgv: ReadonlyArray<string>, nodeOptions: string | undefined): boolean =>
  [...execArgv, ...(nodeOptions ?? "").split(/\s+/)].some((arg) => FLAG.test(arg))

/** Applies the roles' heap policy to this process, unless node was given its own. */
export const applyRoleHeapPolicy: Effect.Effect<void> = Effect.sync(() => {
  if (!heapGrowingGiven(process.execArgv, process.env["NODE_OPTIONS"])) {
    setFlagsFromString(`--heap-growing-percent=${ROLE_HEAP_GROWING_PERCENT}`)
  }
})
