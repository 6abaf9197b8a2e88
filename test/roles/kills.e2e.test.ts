// SIGKILL of each component mid-run under load, against MariaDB and gearmand with the roles as
// processes of the built CLI and worker processes writing a ledger (test/support/killRun.ts):
// every job runs, and a job runs twice only where it was running at the kill. The lease is
// shortened to 3 s, so what waits for a lease comes back within the test.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { COMPONENTS, killRun } from "../support/killRun.js"

describe("SIGKILL mid-run, each component in turn", () => {
  for (const component of COMPONENTS) {
    it.scopedLive(
      `${component}: every job runs; only jobs running at the kill run twice`,
      () =>
        Effect.gen(function*() {
          const report = yield* killRun({ component, lease: 3 })
          assert.strictEqual(report.ran, report.jobs, "every job ran")
          assert.strictEqual(report.leftStored, 0, "every row was deleted")
          assert.isAbove(report.unfinishedAtKill, 0, "the kill came mid-run")
          assert.deepStrictEqual(report.unexplained, [], "no job that was not running at the kill ran twice")
        }),
      180_000
    )
  }
})

describe("a dispatcher frees the jobs of a job server whose connection broke", () => {
  it.scopedLive(
    "gearmand SIGKILLed mid-run with a 120 s lease: the stranded jobs run again within the lease (freed, not expired)",
    () =>
      Effect.gen(function*() {
        const report = yield* killRun({ component: "gearmand", lease: 120, timeout: "100 seconds" })
        assert.strictEqual(report.ran, report.jobs, "every job ran")
        assert.strictEqual(report.leftStored, 0, "every row was deleted")
        assert.isAbove(report.unfinishedAtKill, report.runningAtKill.length, "jobs were queued in gearmand at the kill")
        assert.isBelow(report.drainedSeconds, 120, "the last job ran before any lease of the kill's time could end")
        assert.deepStrictEqual(report.unexplained, [], "no job that was not running at the kill ran twice")
      }),
    180_000
  )
})
