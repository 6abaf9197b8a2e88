// The built `garivini` command on a SQLite file: a killed process loses nothing committed; names
// and targets refused. (The scenario shared with MariaDB is in cliBackends.test.ts.)
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { eventually, gearmandServer } from "./gearman/gearmand.js"
import { background, garivini, listJobs } from "./support/cli.js"
import { tempDir } from "./support/files.js"

describe("garivini CLI on SQLite", () => {
  it.scopedLive(
    "a queue-runner killed with SIGKILL loses no job: restarted, every job runs",
    () =>
      Effect.gen(function*() {
        const db = `sqlite:${join(yield* tempDir("garivini-cli-sqlite-"), "killed.db")}`
        const gearmand = yield* gearmandServer
        const connect = ["--db", db, "--gearmand", gearmand]
        assert.include(
          (yield* garivini("inject", ...connect, "--count", "500", "--function", "kill")).stdout,
          "stored 500"
        )
        // Jobs nobody serves yet: the runner claims (leases) them and they wait in gearmand.
        assert.include(
          (yield* garivini("inject", ...connect, "--count", "100", "--function", "parked")).stdout,
          "stored 100"
        )
        const runner = yield* background(
          "queue-runner",
          ...connect,
          "--batch-run-sleep",
          "0.1",
          "--lease",
          "2",
          "--batch-max-size",
          "50"
        )
        const consume = yield* background("consume", ...connect, "--function", "kill", "--concurrency", "2")
        yield* eventually(
          Effect.map(listJobs(db, "--function", "parked", "--state", "dispatched"), (jobs) => jobs.length === 100),
          "the parked jobs to be leased",
          60_000
        )
        // Killed mid-run: what it claimed is leased in the file, and comes back when the lease ends.
        assert.strictEqual((yield* runner.stop("SIGKILL")).code, 128)
        yield* consume.stop("SIGKILL")
        assert.strictEqual((yield* listJobs(db, "--function", "parked")).length, 100)
        yield* background("queue-runner", ...connect, "--batch-run-sleep", "0.1", "--lease", "2")
        yield* background("consume", ...connect, "--function", "kill", "--concurrency", "4")
        yield* background("consume", ...connect, "--function", "parked", "--concurrency", "4")
        yield* eventually(Effect.map(listJobs(db), (jobs) => jobs.length === 0), "every remaining job to run", 60_000)
      }),
    120_000
  )

  it.scopedLive(
    "inject and consume refuse reserved and malformed function names; nothing is stored",
    () =>
      Effect.gen(function*() {
        const file = join(yield* tempDir("garivini-cli-names-"), "garivini.db")
        const db = `sqlite:${file}`
        const gearmand = yield* gearmandServer
        assert.strictEqual((yield* garivini("migrate", "--db", db)).code, 0)
        for (
          const [name, pure] of [["run_queued_job", []], ["evil\t99999\t0\t1\nvictim", []], ["a b", [
            "--pure"
          ]]] as const
        ) {
          const result = yield* garivini("inject", "--db", db, "--gearmand", gearmand, "--function", name, ...pure)
          assert.strictEqual(result.code, 2, `${JSON.stringify(name)}: ${result.stderr}`)
          assert.include(result.stderr, "invalid option --function")
        }
        const consume = yield* garivini("consume", "--db", db, "--gearmand", gearmand, "--function", "a\tb")
        assert.strictEqual(consume.code, 1, consume.stderr)
        assert.include(consume.stderr, "U+0009")
        assert.deepStrictEqual(yield* listJobs(db), [])
      }),
    60_000
  )

  it.effect(
    "a sqlite: target mixed with MySQL shards, or naming no file, is a configuration error (exit 2); schema --sqlite",
    () =>
      Effect.gen(function*() {
        const mixed = yield* garivini("jobs", "list", "--db", "sqlite:./x.db", "--db", "mysql://root@127.0.0.1/x")
        assert.strictEqual(mixed.code, 2)
        assert.include(mixed.stderr, "cannot be combined with other databases")
        const empty = yield* garivini("status", "--db", "sqlite:")
        assert.strictEqual(empty.code, 2)
        assert.include(empty.stderr, "names no file")
        assert.include(
          (yield* garivini("schema", "--sqlite")).stdout,
          "ON job (rtrim(funcname, ' '), rtrim(uniqkey, ' '))"
        )
      }),
    60_000
  )
})
