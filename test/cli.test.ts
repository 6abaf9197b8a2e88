// The built `garivini` command, run as an operator would, against MariaDB and a gearmand. (The
// scenario shared with SQLite is in cliBackends.test.ts.)
import { existsSync, writeFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { eventually, gearmandServer } from "./gearman/gearmand.js"
import { background, garivini, listJobs } from "./support/cli.js"
import { tempDir } from "./support/files.js"
import { adminQuery, mysqlHost, mysqlPort, testShards } from "./support/mysql.js"

const COMMANDS: ReadonlyArray<ReadonlyArray<string>> = [
  [],
  ["queue-runner"],
  ["injector"],
  ["controller"],
  ["run"],
  ["inject"],
  ["consume"],
  ["jobs"],
  ["jobs", "list"],
  ["jobs", "show"],
  ["jobs", "retry"],
  ["jobs", "delete"],
  ["status"],
  ["migrate"],
  ["schema"],
  ["demo"],
  ["driver"],
  ["web"]
]

describe("garivini CLI", () => {
  it.effect(
    "--help works for every command",
    () =>
      Effect.forEach(COMMANDS, (command) =>
        Effect.map(garivini(...command, "--help"), (r) => {
          assert.strictEqual(r.code, 0, `${command.join(" ")} --help: ${r.stderr}`)
          assert.include(r.stdout, "USAGE", command.join(" "))
          if (command.length > 0) assert.include(r.stdout, command[command.length - 1]!)
        }), { concurrency: 4, discard: true }),
    60_000
  )

  it.scopedLive(
    "bad usage and bad configuration exit 2 with one clear line; no password is shown",
    () =>
      Effect.gen(function*() {
        const badFlag = yield* garivini("status", "--bogus")
        assert.strictEqual(badFlag.code, 2)
        assert.include(badFlag.stderr, "--bogus")
        const file = `/tmp/garivini-test-${process.pid}.yaml`
        writeFileSync(file, "db: [mysql://root@127.0.0.1/x]\nqueueRunner:\n  batchMaxSise: 10\n")
        const badFile = yield* garivini("status", "--config", file)
        assert.strictEqual(badFile.code, 2)
        assert.strictEqual(badFile.stderr.trim().split("\n").length, 1)
        assert.match(
          badFile.stderr,
          /^garivini: invalid configuration queueRunner\.batchMaxSise \(in .*\): is unexpected/
        )
        writeFileSync(file, "{not: [yaml")
        assert.strictEqual((yield* garivini("status", "--config", file)).code, 2)
        const badUrl = yield* garivini("migrate", "--db", "postgres://u:hunter2@h/db")
        assert.strictEqual(badUrl.code, 2)
        assert.strictEqual(badUrl.stderr.trim(), "garivini: invalid configuration db: scheme postgres: is not mysql:")
        const badServer = yield* garivini("status", "--gearmand", "nohost")
        assert.strictEqual(badServer.code, 2)
        assert.include(badServer.stderr, "invalid configuration gearmand")
        // A bad argument touches no database: the file named is never created.
        const untouched = `${yield* tempDir("garivini-bad-handle-")}/never.db`
        for (const args of [["show", "not-a-handle"], ["retry", "1:x"], ["delete", "abc:2"]]) {
          const badHandle = yield* garivini("jobs", ...args, "--db", `sqlite:${untouched}`)
          assert.strictEqual(badHandle.code, 2, `jobs ${args.join(" ")}: ${badHandle.stderr}`)
          assert.isFalse(existsSync(untouched), `jobs ${args.join(" ")} opened the database`)
        }
        const dead = yield* garivini("inject", "--db", "mysql://u:hunter2@127.0.0.1:1/db")
        assert.strictEqual(dead.code, 1)
        assert.include(dead.stderr, "garivini: storage unavailable: no shard could be reached")
        assert.notInclude(dead.stdout + dead.stderr, "hunter2")
      }),
    60_000
  )

  it.scopedLive(
    "settings the roles cannot run with are refused at start: exit 2, one line, nothing started",
    () =>
      Effect.gen(function*() {
        const db = `sqlite:${yield* tempDir("garivini-bad-roles-")}/jobs.db`
        // Nothing listens on port 1: a command that did start would run until the test times out.
        const common = ["--db", db, "--gearmand", "127.0.0.1:1"]
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
          // Above what one claim may take, every claim fails and the runner jams.
          [
            ["queue-runner", "--batch-max-size", "100001"],
            /queueRunner\.batchMaxSize: 100001 is not an integer in \[50, 100000\]/
          ],
          [["up", "--batch-max-size", "100001"], /queueRunner\.batchMaxSize/]
        ]
        for (const [args, expected] of cases) {
          const r = yield* garivini(...args, ...(args[0] === "up" ? ["--db", db, "--listen", "127.0.0.1:0"] : common))
          assert.strictEqual(r.code, 2, `${args.join(" ")}: ${r.stderr}`)
          assert.strictEqual(r.stderr.trim().split("\n").length, 1, r.stderr)
          assert.match(r.stderr, expected)
        }
      }),
    60_000
  )

  it.scopedLive(
    "injector and controller as separate processes serve inject_jobs end to end",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const db = `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`
        const gearmand = yield* gearmandServer
        const connect = ["--db", db, "--gearmand", gearmand]
        const injector = yield* background("injector", ...connect)
        const controller = yield* background("controller", ...connect, "--controller-concurrency", "4")
        const consume = yield* background("consume", ...connect, "--function", "low")
        yield* eventually(
          Effect.zipWith(
            injector.errors,
            controller.errors,
            (i, c) => i.includes("running injector") && c.includes("running controller")
          ),
          "the injector and the controller to start",
          30_000
        )
        const injected = yield* garivini(
          "inject",
          ...connect,
          "--pure",
          "--count",
          "3",
          "--function",
          "low",
          "--arg",
          "quick"
        )
        assert.strictEqual(injected.code, 0, injected.stderr)
        yield* eventually(
          Effect.map(consume.output, (out) => out.split("\n").filter((l) => l.endsWith(" quick")).length === 3),
          "the worker to run 3 jobs",
          60_000
        )
        yield* eventually(
          Effect.map(listJobs(db), (jobs) => jobs.length === 0),
          "the Controller to delete the rows",
          60_000
        )
        for (const p of [consume, controller, injector]) assert.strictEqual((yield* p.stop("SIGTERM")).code, 0)
      }),
    60_000
  )

  it.scopedLive(
    "demo on SQLite (the default storage) with the embedded job server: every job completes",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("garivini-demo-")
        const demo = yield* garivini("demo", "--db", `sqlite:${dir}/garivini.db`, "--count", "60")
        assert.strictEqual(demo.code, 0, demo.stderr)
        assert.include(demo.stdout, `SQLite file ${dir}/garivini.db`)
        assert.match(demo.stdout, /done: 60\/60 jobs ran, none left in the database/)
      }),
    60_000
  )

  it.scopedLive(
    "demo: the main job runs every role and a job server of its own, and every job completes",
    () =>
      Effect.gen(function*() {
        const database = `garivini_test_demo_${process.pid}`
        yield* Effect.acquireRelease(Effect.void, () => adminQuery(`DROP DATABASE IF EXISTS \`${database}\``))
        const demo = yield* garivini(
          "demo",
          "--db",
          `mysql://root@${mysqlHost}:${mysqlPort}/${database}`,
          "--count",
          "60"
        )
        assert.strictEqual(demo.code, 0, demo.stderr)
        assert.include(demo.stdout, "(embedded, started for this demo)")
        assert.include(demo.stdout, "stored 30 job(s) with Client.insertJobs and 30 through inject_jobs")
        assert.match(demo.stdout, /done: 60\/60 jobs ran, none left in the database/)
      }),
    60_000
  )

  it.scopedLive("jobs retry brings a never job back to run", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const db = `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`
      const gearmand = yield* gearmandServer
      const connect = ["--db", db, "--gearmand", gearmand]
      yield* garivini("inject", ...connect, "--count", "2", "--function", "revive")
      yield* adminQuery(`UPDATE \`${shard!.database}\`.job SET run_after = 2147483647`)
      const consume = yield* background("consume", ...connect, "--function", "revive")
      const run = yield* background("queue-runner", ...connect, "--batch-run-sleep", "0.1")
      // A due job of the same function runs: the runner and the worker are at work...
      yield* garivini("inject", ...connect, "--count", "1", "--function", "revive", "--arg", "sentinel")
      yield* eventually(
        Effect.map(consume.output, (o) => o.includes(" sentinel")),
        "the due job beside the parked ones to run",
        60_000
      )
      // ...and the parked ones stay.
      assert.deepStrictEqual((yield* listJobs(db, "--state", "never")).length, 2, "parked jobs do not run")
      const [first] = yield* listJobs(db)
      assert.include((yield* garivini("jobs", "retry", "--db", db, first!.handle)).stdout, "is due")
      yield* eventually(Effect.map(listJobs(db), (jobs) => jobs.length === 1), "the retried job to run", 60_000)
      assert.include(
        (yield* garivini("jobs", "retry", "--db", db, "--function", "revive")).stdout,
        "made 1 never job(s) of revive due"
      )
      yield* eventually(Effect.map(listJobs(db), (jobs) => jobs.length === 0), "the other to run", 60_000)
      assert.strictEqual((yield* garivini("jobs", "retry", "--db", db)).code, 2)
      yield* run.stop("SIGTERM")
      yield* consume.stop("SIGTERM")
    }), 120_000)

  it.scopedLive(
    "a busy queue-runner sent SIGTERM gives back what it claimed and did not submit: leased rows are exactly gearmand's queue",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const db = `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`
        const gearmand = yield* gearmandServer
        const connect = ["--db", db, "--gearmand", gearmand]
        assert.strictEqual(
          (yield* garivini("inject", ...connect, "--count", "30000", "--function", "stranded")).code,
          0
        )
        const queued = Effect.map(
          garivini("status", ...connect, "--json"),
          (r) =>
            (JSON.parse(r.stdout) as { functions: ReadonlyArray<{ function: string; gearmand_queued?: number }> })
              .functions.find((f) => f.function === "stranded")?.gearmand_queued ?? 0
        )
        // No worker: whatever gearmand accepted stays queued there. The default lease (1000 s) would
        // strand anything claimed and not submitted.
        const run = yield* background(
          "queue-runner",
          ...connect,
          "--queue-watermark-depth",
          "0",
          "--batch-max-size",
          "2000"
        )
        yield* eventually(Effect.map(queued, (n) => n >= 1), "the runner to be busy", 60_000)
        const exit = yield* run.stop("SIGTERM")
        assert.strictEqual(exit.code, 0, exit.stderr)
        const status = JSON.parse((yield* garivini("status", ...connect, "--json")).stdout) as {
          functions: ReadonlyArray<{ function: string; dispatched: number; gearmand_queued?: number }>
        }
        const row = status.functions.find((f) => f.function === "stranded")!
        assert.strictEqual(row.dispatched, row.gearmand_queued, "every leased row was handed to gearmand")
      }),
    120_000
  )

  it.scopedLive(
    "SIGTERM during a run: exit 0, no job lost, no row leased beyond what was in flight",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const db = `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`
        const gearmand = yield* gearmandServer
        const connect = ["--db", db, "--gearmand", gearmand]
        yield* garivini("inject", ...connect, "--count", "3000", "--function", "term")
        const run = yield* background("queue-runner", ...connect, "--batch-run-sleep", "0.1", "--lease", "3")
        const consume = yield* background("consume", ...connect, "--function", "term", "--concurrency", "2")
        yield* eventually(Effect.map(listJobs(db), (jobs) => jobs.length < 2500), "some jobs to run", 60_000)
        const runnerExit = yield* run.stop("SIGTERM")
        assert.strictEqual(runnerExit.code, 0, runnerExit.stderr)
        const consumerExit = yield* consume.stop("SIGTERM")
        assert.strictEqual(consumerExit.code, 0, consumerExit.stderr)
        // What is still leased was handed to gearmand and not yet done: nothing more.
        const leased = (yield* listJobs(db, "--state", "dispatched")).length
        const status = JSON.parse((yield* garivini("status", ...connect, "--json")).stdout)
        const queued = status.functions.find((f: { function: string }) => f.function === "term")?.gearmand_queued ?? 0
        assert.isTrue(leased <= queued, `${leased} leased rows, ${queued} jobs queued in gearmand`)
        // Started again, everything left runs: no job was lost.
        const run2 = yield* background("queue-runner", ...connect, "--batch-run-sleep", "0.1", "--lease", "3")
        const consume2 = yield* background("consume", ...connect, "--function", "term", "--concurrency", "4")
        yield* eventually(Effect.map(listJobs(db), (jobs) => jobs.length === 0), "every job to run", 60_000)
        yield* run2.stop("SIGTERM")
        yield* consume2.stop("SIGTERM")
      }),
    120_000
  )
})
