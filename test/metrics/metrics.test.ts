// The metrics move where the work happens, the exposition serves them in Prometheus' format,
// and the Grafana dashboard queries only metrics that exist.
import { readFileSync } from "node:fs"
import { createServer } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, MetricLabel, Schema } from "effect"
import * as DriverMetrics from "../../src/driver/metrics.js"
import * as GearmanMetrics from "../../src/gearman/metrics.js"
import { serve } from "../../src/metrics/Prometheus.js"
import * as Process from "../../src/metrics/process.js"
import * as Client from "../../src/roles/Client.js"
import * as RoleMetrics from "../../src/roles/metrics.js"
import * as StorageMetrics from "../../src/storage/metrics.js"
import { layerMemory } from "../../src/storage/Storage.js"

const count = (counter: Metric.Metric.Counter<number>) => Effect.map(Metric.value(counter), (s) => s.count)
const gauge = (g: Metric.Metric.Gauge<number>, labels: Record<string, string>) =>
  Effect.map(
    Metric.value(Metric.taggedWithLabels(g, Object.entries(labels).map(([k, v]) => MetricLabel.make(k, v)))),
    (s) => s.value
  )

const scrape = (port: number, path = "/metrics") =>
  Effect.promise(() =>
    fetch(`http://127.0.0.1:${port}${path}`).then(async (r) => ({ status: r.status, text: await r.text() }))
  )

describe("metrics", () => {
  it.effect("storage counters move: inserted (not duplicates), completed, retried, failed", () =>
    Effect.gen(function*() {
      const before = {
        inserted: yield* count(StorageMetrics.jobsInserted),
        completed: yield* count(StorageMetrics.jobsCompleted),
        retried: yield* count(StorageMetrics.jobsRetried),
        failed: yield* count(RoleMetrics.jobsFailed)
      }
      const outcomes = yield* Client.insertJobs([
        { funcname: "m", arg: "1" },
        { funcname: "m", arg: "2", uniqkey: "u" },
        { funcname: "m", arg: "3", uniqkey: "u" }
      ])
      assert.strictEqual((yield* count(StorageMetrics.jobsInserted)) - before.inserted, 2)
      yield* Client.failedJob({ ...outcomes[0]!.handle, failcount: 0 })
      assert.strictEqual((yield* count(RoleMetrics.jobsFailed)) - before.failed, 1)
      assert.strictEqual((yield* count(StorageMetrics.jobsRetried)) - before.retried, 1)
      yield* Client.completeJob(outcomes.map((o) => o.handle))
      assert.strictEqual((yield* count(StorageMetrics.jobsCompleted)) - before.completed, 2)
    }).pipe(Effect.provide(layerMemory())))

  it.effect("the stored-job gauges follow counts(), one line per state; a function gone drops to 0", () =>
    Effect.gen(function*() {
      const row = {
        dbid: 7,
        funcname: "gauged",
        due: 3,
        scheduled: 2,
        retrying: 4,
        dispatched: 5,
        running: 8,
        never: 1,
        dead: 6,
        cancelled: 7,
        oldestDue: 100
      }
      const seen = StorageMetrics.recordCounts([row], 160)
      const labels = { dbid: "7", funcname: "gauged" }
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "due" }), 3)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "scheduled" }), 2)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "never" }), 1)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "retrying" }), 4)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "dispatched" }), 5)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "running" }), 8)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "dead" }), 6)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "cancelled" }), 7)
      assert.strictEqual(yield* gauge(StorageMetrics.oldestDueAge, labels), 60)
      StorageMetrics.recordCounts([], 170, seen)
      assert.strictEqual(yield* gauge(StorageMetrics.jobsStored, { ...labels, state: "due" }), 0)
      assert.strictEqual(yield* gauge(StorageMetrics.oldestDueAge, labels), 0)
    }))

  it.effect("the Driver's process gauge counts each job's processes by state, zero included", () =>
    Effect.gen(function*() {
      const processes = new Map([[1, { state: "busy" as const }], [2, { state: "busy" as const }], [3, {
        state: "idle" as const
      }]])
      DriverMetrics.recordProcesses([{ job: { name: "resize" }, processes }])
      const of = (state: string) => gauge(DriverMetrics.processes, { job: "resize", state })
      assert.deepStrictEqual([yield* of("busy"), yield* of("idle"), yield* of("starting")], [2, 1, 0])
      processes.delete(1)
      DriverMetrics.recordProcesses([{ job: { name: "resize" }, processes }])
      assert.strictEqual(yield* of("busy"), 1)
    }))

  it.scoped("/metrics serves the Prometheus text format; other paths are 404", () =>
    Effect.gen(function*() {
      yield* Effect.provide(Client.insertJob({ funcname: "exposed", arg: "x" }), layerMemory())
      const { port } = yield* serve({ host: "127.0.0.1", port: 0 })
      const { status, text } = yield* scrape(port)
      assert.strictEqual(status, 200)
      assert.match(text, /^# TYPE garivini_jobs_inserted_total counter$/m)
      assert.match(text, /^garivini_jobs_inserted_total\{[^}]*\} [1-9]/m)
      assert.match(text, /^garivini_process_resident_memory_bytes\{[^}]*\} [1-9]/m)
      assert.strictEqual((yield* scrape(port, "/")).status, 404)
    }))

  it.scoped("a port in use fails the start with MetricsListenFailed", () =>
    Effect.gen(function*() {
      const taken = yield* Effect.acquireRelease(
        Effect.async<{ readonly port: number; readonly close: () => void }>((resume) => {
          const server = createServer().listen(0, "127.0.0.1", () => {
            const address = server.address()
            resume(Effect.succeed({
              port: typeof address === "object" && address !== null ? address.port : 0,
              close: () => server.close()
            }))
          })
        }),
        (s) => Effect.sync(s.close)
      )
      const error = yield* Effect.flip(Effect.scoped(serve({ host: "127.0.0.1", port: taken.port })))
      assert.strictEqual(error._tag, "MetricsListenFailed")
      assert.include(error.message, "EADDRINUSE")
    }))

  it.scoped("every metric the Grafana dashboard queries is in the exposition", () =>
    Effect.gen(function*() {
      // Every metric once, as the roles would update it (labelled ones appear only once used).
      const l = [MetricLabel.make("test", "dashboard")]
      const counters = [
        StorageMetrics.jobsInserted,
        StorageMetrics.jobsCompleted,
        StorageMetrics.jobsClaimed,
        StorageMetrics.jobsRetried,
        RoleMetrics.jobsParked,
        RoleMetrics.jobsDispatched,
        RoleMetrics.jobsFailed,
        RoleMetrics.inputsRejected,
        GearmanMetrics.connectionsLost,
        GearmanMetrics.jobsSubmitted,
        DriverMetrics.restarts,
        DriverMetrics.crashLoopHolds
      ]
      for (const c of counters) c.unsafeUpdate(1, l)
      const gauges = [
        StorageMetrics.jobsStored,
        StorageMetrics.oldestDueAge,
        GearmanMetrics.serverQueued,
        GearmanMetrics.serverRunning,
        GearmanMetrics.serverWorkers,
        GearmanMetrics.serverUp,
        DriverMetrics.processes,
        Process.uptime
      ]
      for (const g of gauges) g.unsafeUpdate(1, l)
      for (const h of [RoleMetrics.runTime, RoleMetrics.claimRoundTime, RoleMetrics.injectRoundTrip]) {
        h.unsafeUpdate(0.01, l)
      }
      const { port } = yield* serve({ host: "127.0.0.1", port: 0 })
      const exposed = new Set(
        (yield* scrape(port)).text.split("\n").filter((line) => !line.startsWith("#")).map((line) =>
          line.split(/[{ ]/)[0]!
        )
      )
      const Dashboard = Schema.Struct({
        title: Schema.String,
        panels: Schema.Array(Schema.Struct({ targets: Schema.Array(Schema.Struct({ expr: Schema.String })) }))
      })
      const dashboard = Schema.decodeUnknownSync(Dashboard)(
        JSON.parse(readFileSync(new URL("../../docs/grafana-dashboard.json", import.meta.url), "utf8"))
      )
      const queried = new Set(
        dashboard.panels.flatMap((p) =>
          p.targets.flatMap((t) => t.expr.match(/\b(?:garivini|gearman)_[a-z0-9_]+/g) ?? [])
        )
      )
      assert.isAbove(queried.size, 15)
      for (const name of queried) assert.isTrue(exposed.has(name), `${name} is not exposed`)
    }))
})
