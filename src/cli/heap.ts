/**
 * The heap policy of the long-running roles (`queue-runner`, `injector`, `controller`, `run`).
 *
 * A role's live heap is small and flat (≈ 25 MB, nearly all of it loaded code), but everything a
 * round holds for longer than a scavenge (claimed rows, submits in flight) is promoted and dies in
 * the old generation. V8 lets the old generation grow to about 4× the live heap before it marks
 * and compacts, so a QueueRunner moving 100,000 jobs peaked near 200 MB RSS while ≈ 25 MB of it
 * was alive (docs/performance.md, "Runner memory"). A fixed growing factor of 1.5 keeps the
 * old generation near 40–60 MB; the price is a mark-compact (10–30 ms) every couple of seconds
 * under full load, which measured no loss in throughput.
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
