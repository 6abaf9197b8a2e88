// Ends the run with the plain line "N passed, N failed" (", N skipped" when any were skipped),
// which CI reads regardless of the test runner.
import type { Reporter, TestModule } from "vitest/node"

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, errors: ReadonlyArray<unknown>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of modules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
    }
    // An unhandled error fails the run even when every test passed.
    failed += errors.length
    const line = `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`
    // After the default reporter's summary, which it prints once this hook returns.
    setImmediate(() => process.stdout.write(`\n${line}\n`))
  }
}
