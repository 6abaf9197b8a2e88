// Two `garivini queue-runner` processes, each with its own pool, on one store: every job runs
// exactly once (claims are SELECT … FOR UPDATE SKIP LOCKED on MariaDB, one writer at a time on
// SQLite), and a worker process completes them all.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { eventually, gearmandServer } from "./gearman/gearmand.js"
import { background, garivini, listJobs } from "./support/cli.js"
import { tempDir } from "./support/files.js"
import { mysqlHost, mysqlPort, testShards } from "./support/mysql.js"

const JOBS = 2000

const stores: ReadonlyArray<readonly [string, Effect.Effect<string, never, Scope.Scope>]> = [
  ["MariaDB", Effect.map(testShards(1), ([shard]) => `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`)],
  ["one SQLite file", Effect.map(tempDir("garivini-two-runners-"), (dir) => `sqlite:${dir}/jobs.db`)]
]

describe("two queue-runner processes", () => {
  for (const [name, store] of stores) {
    it.scopedLive(`${name}: ${JOBS} jobs, each run exactly once`, () =>
      Effect.gen(function*() {
        const db = yield* store
        const server = yield* gearmandServer
        const connect = ["--db", db, "--gearmand", server]
        const stored = yield* garivini(
          "inject",
          ...connect,
          "--count",
          String(JOBS),
          "--function",
          "twice",
          "--arg",
          "x"
        )
        assert.strictEqual(stored.code, 0, stored.stderr)
        // Small batches, so both runners claim many times over the same rows.
        const runners = [
          yield* background("queue-runner", ...connect, "--batch-run-sleep", "0.05", "--batch-max-size", "50"),
          yield* background("queue-runner", ...connect, "--batch-run-sleep", "0.05", "--batch-max-size", "50")
        ]
        const consume = yield* background("consume", ...connect, "--function", "twice", "--concurrency", "8")
        yield* eventually(
          Effect.map(listJobs(db, "--function", "twice"), (jobs) => jobs.length === 0),
          "every job to complete",
          90_000
        )
        // Stopped first, so every line it printed is in.
        assert.strictEqual((yield* consume.stop("SIGTERM")).code, 0)
        const handles = (yield* consume.output).split("\n").filter((l) => l.startsWith("Hay it's a job: ")).map((l) =>
          l.split(" ")[4]!
        )
        const runs = new Map<string, number>()
        for (const h of handles) runs.set(h, (runs.get(h) ?? 0) + 1)
        assert.strictEqual(runs.size, JOBS, "every job ran")
        const twice = [...runs].filter(([, n]) => n > 1)
        assert.deepStrictEqual(twice, [], "no job ran twice")
        for (const runner of runners) assert.strictEqual((yield* runner.stop("SIGTERM")).code, 0)
      }), 150_000)
  }
})
