// The worker helper's log annotations: a handler's own log lines carry the role and the function
// beside what the caller annotated; failure lines add the Gearman handle.
import { assert, describe, it } from "@effect/vitest"
import { Effect, HashMap, Logger } from "effect"
import { encodeWorkerJson } from "../../src/Job.js"
import { gearmanHandler, storedJobKey } from "../../src/roles/Worker.js"
import { layerMemory, Storage } from "../../src/storage/Storage.js"
import { gearmanJobOf } from "../support/gearmanJob.js"

const gearmanJob = (jobid: number, handle: string) =>
  gearmanJobOf(
    encodeWorkerJson({
      jobid,
      dbid: 1,
      funcname: "resize",
      arg: Buffer.from(`job ${jobid}`),
      uniqkey: null,
      coalesce: null,
      runAfter: 0,
      flag: "shim",
      failcount: 0
    }),
    "resize",
    handle
  )

interface Line {
  readonly message: string
  readonly annotations: Record<string, unknown>
}

const capturing = (lines: Array<Line>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, message }) =>
      lines.push({
        message: String(Array.isArray(message) ? message.join(" ") : message),
        annotations: Object.fromEntries(HashMap.toEntries(annotations))
      })
    )
  )

describe("the worker helper's log annotations", () => {
  it.effect("a handler's lines carry role and funcname beside its caller's; each job its own caller's", () =>
    Effect.gen(function*() {
      const storage = yield* Storage
      captured.length = 0
      const handler = gearmanHandler(storage, () => Effect.void, "resize", (job) => Effect.log(`ran ${job.text}`))
      for (const [jobid, tenant] of [[1, "a"], [2, "b"], [3, "a"]] as const) {
        const gjob = gearmanJob(jobid, `H:memory:${jobid}`)
        assert.strictEqual(storedJobKey(gjob), `1:${jobid}`)
        // Each job in a fiber of its own, as the Gearman worker runs it.
        yield* Effect.fork(handler(gjob).pipe(Effect.annotateLogs("tenant", tenant))).pipe(
          Effect.flatMap((fiber) => fiber.await)
        )
      }
      yield* Effect.log("after the jobs")
      assert.deepStrictEqual(captured.map((l) => [l.message, l.annotations]), [
        ["ran job 1", { tenant: "a", role: "Worker", funcname: "resize" }],
        ["ran job 2", { tenant: "b", role: "Worker", funcname: "resize" }],
        ["ran job 3", { tenant: "a", role: "Worker", funcname: "resize" }],
        // The caller's fiber is left as it was.
        ["after the jobs", {}]
      ])
    }).pipe(Effect.provide(layerMemory()), Effect.provide(capturingLayer)))

  it.effect("a handler that dies: the line saying so names the Gearman handle", () =>
    Effect.gen(function*() {
      const storage = yield* Storage
      captured.length = 0
      const handler = gearmanHandler(storage, () => Effect.void, "resize", () => Effect.die("boom"))
      yield* Effect.flip(handler(gearmanJob(7, "H:memory:7")))
      const died = captured.find((l) => l.message.includes("handler died"))
      assert.isDefined(died, captured.map((l) => l.message).join(" | "))
      assert.deepInclude(died!.annotations, { role: "Worker", funcname: "resize", gearmanHandle: "H:memory:7" })
    }).pipe(Effect.provide(layerMemory()), Effect.provide(capturingLayer)))
})

const captured: Array<Line> = []
const capturingLayer = capturing(captured)
