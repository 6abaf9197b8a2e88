// The chaos soak's job handler, shared by the worker processes (chaos/worker.ts) and the Driver's
// worker module (chaos/driverWorker.ts): a worker-helper handler that writes `start`, then either
// `fail` (before the job's `failUntil`: it asks for a retry in a second) or, after sleeping
// `sleepMs`, `done` to `ledger`.
import { Effect, Either } from "effect"
import * as Worker from "../src/roles/Worker.js"
import { append, decodeArg } from "./ledger.js"

export const chaosHandler = (ledger: () => string, name: string): Worker.JobHandler => (job) =>
  Effect.gen(function*() {
    const arg = decodeArg(job.text)
    if (Either.isLeft(arg)) return yield* Effect.logError(`not a chaos job: ${job.text.slice(0, 100)}`)
    const { failUntil, id, sleepMs } = arg.right
    const h = `${job.dbid}:${job.jobid}`
    const entry = (ev: "start" | "fail" | "done") =>
      append(ledger(), { ev, id, t: Date.now(), p: process.pid, w: name, h })
    entry("start")
    if (Date.now() < failUntil) {
      entry("fail")
      return yield* Worker.retryAt("+1")
    }
    if (sleepMs > 0) yield* Effect.sleep(sleepMs)
    entry("done")
  })
