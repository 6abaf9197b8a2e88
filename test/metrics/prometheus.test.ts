// The issue's proof: Debian's real Prometheus scrapes a running `garivini up` (and the worker
// beside it), and its own HTTP API shows the due count and the completed counter moving as the
// jobs run. Prometheus missing fails the test, saying how to install it.
import { spawn, spawnSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { eventually } from "../gearman/gearmand.js"
import { background, garivini } from "../support/cli.js"
import { tempDir } from "../support/files.js"
import { freePort } from "../support/ports.js"

const FUNCTION = "prom_test"
const JOBS = 20

const QueryAnswer = Schema.Struct({
  status: Schema.Literal("success"),
  data: Schema.Struct({
    result: Schema.Array(Schema.Struct({ value: Schema.Tuple(Schema.Number, Schema.NumberFromString) }))
  })
})

/** The value of an instant query (a sum: one sample, or none before the first scrape). */
const query = (port: number, promql: string) =>
  Effect.promise(() =>
    fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`).then((r) => r.json())
  ).pipe(
    Effect.flatMap(Schema.decodeUnknown(QueryAnswer)),
    Effect.map((a) => a.data.result[0]?.value[1]),
    Effect.orDie
  )

const startPrometheus = (dir: string, targets: ReadonlyArray<number>, port: number) =>
  Effect.gen(function*() {
    const config = path.join(dir, "prometheus.yml")
    writeFileSync(
      config,
      [
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        "  - job_name: garivini",
        "    static_configs:",
        `      - targets: [${targets.map((t) => `"127.0.0.1:${t}"`).join(", ")}]`,
        ""
      ].join("\n")
    )
    let output = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn("prometheus", [
          `--config.file=${config}`,
          `--storage.tsdb.path=${path.join(dir, "tsdb")}`,
          `--web.listen-address=127.0.0.1:${port}`
        ], { stdio: ["ignore", "pipe", "pipe"] })
      ),
      (c) =>
        Effect.async<void>((resume) => {
          if (c.exitCode !== null || c.signalCode !== null) return resume(Effect.void)
          c.once("exit", () => resume(Effect.void))
          c.kill("SIGKILL")
        })
    )
    child.stderr.on("data", (d: Buffer) => (output += d.toString()))
    yield* eventually(
      Effect.promise(() => fetch(`http://127.0.0.1:${port}/-/ready`).then((r) => r.ok, () => false)),
      "Prometheus to be ready"
    ).pipe(Effect.tapDefect(() => Effect.logError(output)))
  })

describe("Prometheus scraping garivini", () => {
  it.scopedLive("reads the due count and the completed counter moving as jobs run", () =>
    Effect.gen(function*() {
      const which = spawnSync("prometheus", ["--version"])
      if (which.error !== undefined) {
        assert.fail(
          "the prometheus binary is missing: apt-get install -y prometheus (Debian's package; bash .ci/run installs it)"
        )
      }
      const dir = yield* tempDir("garivini-prometheus-")
      const db = `sqlite:${path.join(dir, "garivini.db")}`
      const config = path.join(dir, "garivini.yaml")
      // The gauges are read every second here (15 s by default).
      writeFileSync(config, "metrics:\n  interval: 1\n")
      const [jobServer, upMetrics, workerMetrics, prometheusPort] = [
        yield* freePort,
        yield* freePort,
        yield* freePort,
        yield* freePort
      ]
      const up = yield* background(
        "up",
        "--config",
        config,
        "--db",
        db,
        "--listen",
        `127.0.0.1:${jobServer}`,
        "--metrics-listen",
        `127.0.0.1:${upMetrics}`,
        "--batch-run-sleep",
        "0.1",
        // No worker yet: 5 jobs go to gearmand, the rest stay due in the database.
        "--queue-watermark-depth",
        "5",
        "--defer-for",
        "1"
      )
      yield* eventually(
        Effect.map(up.output, (o) => o.includes("clients and workers connect to")),
        "garivini up to be ready"
      )
      yield* startPrometheus(dir, [upMetrics, workerMetrics], prometheusPort)

      const stored = yield* garivini("inject", "--db", db, "--count", String(JOBS), "--function", FUNCTION)
      assert.strictEqual(stored.code, 0, stored.stderr)
      const due = `sum(garivini_jobs{state="due",funcname="${FUNCTION}"})`
      const completed = "sum(garivini_jobs_completed_total)"
      yield* eventually(
        Effect.map(query(prometheusPort, due), (v) => v !== undefined && v > 0),
        "Prometheus to see due jobs",
        60_000
      )
      const completedBefore = yield* query(prometheusPort, completed)
      assert.strictEqual(completedBefore ?? 0, 0)

      yield* background(
        "consume",
        "--db",
        db,
        "--gearmand",
        `127.0.0.1:${jobServer}`,
        "--function",
        FUNCTION,
        "--metrics-listen",
        `127.0.0.1:${workerMetrics}`
      )
      yield* eventually(
        Effect.map(query(prometheusPort, completed), (v) => v === JOBS),
        `Prometheus to see ${JOBS} jobs completed`,
        60_000
      )
      yield* eventually(
        Effect.map(query(prometheusPort, due), (v) => v === 0),
        "Prometheus to see no job due",
        60_000
      )
    }), 180_000)
})
