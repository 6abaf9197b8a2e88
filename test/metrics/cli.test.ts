// `--metrics-listen` on the long-running commands, as a user runs them: /metrics served in
// Prometheus' format with the expected families; a port in use stops the start in one line.
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { eventually } from "../gearman/gearmand.js"
import { background, garivini } from "../support/cli.js"
import { tempDir } from "../support/files.js"
import { closedPort, freePort } from "../support/ports.js"

const scrape = (port: number) =>
  Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => ""))

describe("garivini --metrics-listen", () => {
  it.scopedLive(
    "queue-runner serves /metrics (a port alone: on 127.0.0.1) with its families",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("garivini-metrics-cli-")
        const db = `sqlite:${path.join(dir, "garivini.db")}`
        const config = path.join(dir, "garivini.yaml")
        writeFileSync(config, "metrics:\n  interval: 1\n")
        // No job server: the runner claims nothing, the jobs stay due.
        const stored = yield* garivini("inject", "--db", db, "--count", "3", "--function", "waiting_fn")
        assert.strictEqual(stored.code, 0, stored.stderr)
        const [port, noServer] = [yield* freePort, yield* closedPort]
        const runner = yield* background(
          "queue-runner",
          "--config",
          config,
          "--db",
          db,
          "--gearmand",
          `127.0.0.1:${noServer}`,
          "--metrics-listen",
          String(port)
        )
        yield* eventually(
          Effect.map(scrape(port), (text) => text.includes("garivini_jobs{dbid=\"1\",funcname=\"waiting_fn\"")),
          "the stored-job gauges on /metrics"
        )
        const text = yield* scrape(port)
        for (
          const family of [
            "garivini_jobs gauge",
            "garivini_oldest_due_job_age_seconds gauge",
            "garivini_jobs_inserted_total counter",
            "garivini_jobs_completed_total counter",
            "garivini_jobs_failed_total counter",
            "garivini_gearmand_up gauge",
            "garivini_process_resident_memory_bytes gauge",
            "garivini_process_event_loop_delay_seconds gauge"
          ]
        ) assert.include(text, `# TYPE ${family}`, family)
        // The job server is not there: the gauge says so.
        assert.match(text, new RegExp(`^garivini_gearmand_up\\{server="127\\.0\\.0\\.1:${noServer}"[^}]*\\} 0$`, "m"))
        for (const [state, n] of [["due", 3], ["scheduled", 0], ["never", 0]] as const) {
          assert.match(
            text,
            new RegExp(`^garivini_jobs\\{dbid="1",funcname="waiting_fn",state="${state}"[^}]*\\} ${n}$`, "m")
          )
        }

        // A second command on the same port stops at once, in one line, exit 1.
        const clash = yield* garivini("gearmand", "--listen", "127.0.0.1:0", "--metrics-listen", `127.0.0.1:${port}`)
        assert.strictEqual(clash.code, 1)
        assert.include(clash.stderr, `garivini: cannot listen on 127.0.0.1:${port} for metrics: EADDRINUSE`)

        // Stopped, the port is closed with it.
        const exit = yield* runner.stop("SIGTERM")
        assert.strictEqual(exit.code, 0, exit.stderr)
        assert.strictEqual(yield* scrape(port), "")
      }),
    120_000
  )

  it.effect("a bad address is refused as configuration (exit 2)", () =>
    Effect.gen(function*() {
      const bad = yield* garivini("gearmand", "--listen", "127.0.0.1:0", "--metrics-listen", "::1:9464")
      assert.strictEqual(bad.code, 2)
      assert.include(bad.stderr, "metrics listen")
    }))
})
