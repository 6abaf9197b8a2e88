/**
 * The heap policy of the commands that run roles (`queue-runner`, `injector`, `controller`,
 * `run`, `up`).
 *
 * A role's live heap is small and flat (≈ 25 MB, nearly all of it loaded code), but a steady
 * share of the short-lived objects each job goes through (the submit path's Effect objects, some
 * of them pretenured by V8) survives a scavenge and dies in the old generation. V8 lets the old
 * generation grow to about 4× the live heap before it marks and compacts, so a QueueRunner
 * moving 100,000 jobs peaked near 200 MB RSS while ≈ 25 MB of it was alive (docs/performance.md,
 * "Runner memory, 2026-11-24"). A fixed growing factor of 1.5
 * has the heap marked at ≈ 40–45 MB instead of ≈ 100 MB (peak RSS ≈ 130–140 MB); the price is a
 * mark-compact (≈ 10 ms, mostly incremental) about every second under full load, which stayed
 * within the benchmark's run-to-run noise.
 *
 * V8's allocation-site pretenuring makes it worse: it sees the objects of a site (a Deferred per
 * submit, fiber frames) alive at a scavenge — they are in flight — and from then on allocates them
 * straight in the old generation, where they die milliseconds later. Turned off, a run of 100,000
 * jobs took 24 mark-compacts instead of 30–32 and moved 3–25 % more jobs a second (five pairs of
 * runs, each with the growing factor above).
 *
 * Both settings are read by V8 as it collects, so they can be set once the process runs
 * (`v8.setFlagsFromString`, checked by counting collections with `--trace-gc`); the young
 * generation's size cannot (it is fixed when the heap is set up):
 * `NODE_OPTIONS=--max-semi-space-size=4` saves ≈ 25 MB more. A value given on node's command line
 * or in NODE_OPTIONS wins.
 */
import { setFlagsFromString } from "node:v8"
import { Effect } from "effect"

/** The old generation may grow to 1 + this/100 times what survived the last mark-compact. */
export const ROLE_HEAP_GROWING_PERCENT = 50

/** The V8 settings of the policy (by name), each applied unless node was started with its own value. */
export const ROLE_V8_FLAGS: ReadonlyArray<{ readonly name: string; readonly flag: string }> = [
  { name: "heap-growing-percent", flag: `--heap-growing-percent=${ROLE_HEAP_GROWING_PERCENT}` },
  { name: "allocation-site-pretenuring", flag: "--no-allocation-site-pretenuring" }
]

/** Whether node was started with its own value for the V8 setting `name` (a flag or NODE_OPTIONS; `-`/`_`, `--no-`). */
export const v8FlagGiven = (
  name: string,
  execArgv: ReadonlyArray<string>,
  nodeOptions: string | undefined
): boolean => {
  const given = new RegExp(`^--(no-?)?${name.split("-").join("[-_]")}(=|$)`)
  return [...execArgv, ...(nodeOptions ?? "").split(/\s+/)].some((arg) => given.test(arg))
}

/** Applies the roles' heap policy to this process, leaving alone what node was given. */
export const applyRoleHeapPolicy: Effect.Effect<void> = Effect.sync(() => {
  for (const { flag, name } of ROLE_V8_FLAGS) {
    if (!v8FlagGiven(name, process.execArgv, process.env["NODE_OPTIONS"])) setFlagsFromString(flag)
  }
})
