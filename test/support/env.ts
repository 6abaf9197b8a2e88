import { Effect } from "effect"

// The environment a child process of a test gets: this one's, less every GARIVINI_* setting a
// developer's shell may carry (GARIVINI_DB, GARIVINI_LEASE, …), which would change what the child
// does. The suite's own GARIVINI_TEST_* variables stay.
export const childEnv = (extra: Readonly<Record<string, string>> = {}): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (name.startsWith("GARIVINI_") && !name.startsWith("GARIVINI_TEST_")) continue
    env[name] = value
  }
  return { ...env, ...extra }
}

/** Runs `effect` with these variables set in this process (undefined: unset), restoring them after. */
export const withEnv = <A, E, R>(vars: Record<string, string | undefined>, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
      for (const [k, v] of Object.entries(vars)) v === undefined ? delete process.env[k] : (process.env[k] = v)
      return saved
    }),
    () => effect,
    (saved) =>
      Effect.sync(() => {
        for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v)
      })
  )
