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
