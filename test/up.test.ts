// `garivini up` as a user runs it: one process with the embedded job server and every role; a
// worker elsewhere (here: this test process) connects to it. Killed with SIGKILL halfway and
// restarted, every stored job still runs.
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, type Scope } from "effect"
import { jobState } from "../src/Job.js"
import { INTERNAL_FUNCTIONS, upCounts } from "../src/cli/up.js"
import * as Gearman from "../src/gearman/Gearman.js"
import { serve } from "../src/jobserver/tcpServer.js"
import * as Client from "../src/roles/Client.js"
import { INJECT_FUNCTION } from "../src/roles/Injector.js"
import * as Worker from "../src/roles/Worker.js"
import type { Storage } from "../src/storage/Storage.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { eventually, gearmand } from "./gearman/gearmand.js"
import { background, garivini } from "./support/cli.js"
import { remaining } from "./support/e2e.js"
import { tempDir } from "./support/files.js"
import { testShards } from "./support/mysql.js"
import { freePort } from "./support/ports.js"
import { gearadminStatus, gearmanClient, gearmanWorker } from "./support/tools.js"

interface Target {
  readonly name: string
  /** The `--db` value and a Storage layer on the same database, for the test's own worker. */
  readonly make: Effect.Effect<
    { readonly db: string; readonly storage: Layer.Layer<Storage> },
    never,
    Scope.Scope
  >
}

const mysqlTarget: Target = {
  name: "MariaDB",
  make: Effect.map(testShards(1), (shards) => ({
    db: `mysql://root@${shards[0]!.host}:${shards[0]!.port}/${shards[0]!.database}`,
    storage: Layer.orDie(StorageLayers.layer({ shards }))
  }))
}

const sqliteTarget: Target = {
  name: "SQLite (the default)",
  make: Effect.map(tempDir("garivini-up-"), (dir) => {
    const filename = path.join(dir, "garivini.db")
    return { db: `sqlite:${filename}`, storage: Layer.orDie(StorageLayers.layerSqlite({ filename })) }
  })
}

const JOBS = 10_000
const FUNCTION = "up_test"

const startUp = (db: string, port: number) =>
  Effect.gen(function*() {
    const up = yield* background(
      "up",
      "--db",
      db,
      "--listen",
      `127.0.0.1:${port}`,
      "--lease",
      "20",
      "--controller-timeout",
      "15",
      "--batch-run-sleep",
      "0.1"
    )
    yield* eventually(
      Effect.map(up.output, (o) => o.includes("clients and workers connect to")),
      "garivini up to be ready"
    )
    return up
  })

for (const target of [sqliteTarget, mysqlTarget]) {
  describe(`garivini up over ${target.name}`, () => {
    it.scopedLive(
      `${JOBS} jobs stored and injected all run; SIGKILL halfway and a restart lose none`,
      () =>
        Effect.gen(function*() {
          const { db, storage } = yield* target.make
          const port = yield* freePort
          const first = yield* startUp(db, port)
          assert.include(yield* first.output, `job server 127.0.0.1:${port} (embedded)`)

          const runs = new Map<string, number>()
          const services = Layer.mergeAll(storage, Gearman.layer({ servers: [`127.0.0.1:${port}`] }))
          yield* Effect.gen(function*() {
            // Half through the database, half through inject_jobs (answered once stored).
            yield* Client.insertJobs(
              Array.from({ length: JOBS / 2 }, (_, i) => ({ funcname: FUNCTION, arg: `direct ${i}` }))
            )
            const gearman = yield* Gearman.Gearman
            yield* Effect.forEach(
              Array.from({ length: JOBS / 2 }),
              (_, i) => gearman.submit(INJECT_FUNCTION, JSON.stringify({ funcname: FUNCTION, arg: `injected ${i}` })),
              { concurrency: 16, discard: true }
            )

            yield* Worker.serve({
              [FUNCTION]: (job) => Effect.sync(() => void runs.set(job.text, (runs.get(job.text) ?? 0) + 1))
            }, { concurrency: 8 })
            yield* eventually(Effect.sync(() => runs.size >= JOBS / 2), "half the jobs to run", 120_000)
            yield* first.stop("SIGKILL")
            // What had run, and which jobs' rows were leased (run_after in the future), at the kill.
            const runsAtKill = new Map(runs)
            // Leased: claimed by the QueueRunner or stored leased by the Injector (dispatched; the
            // Injector's show as scheduled without migration 4), running (heartbeating); a later
            // run_after after a failure (retrying) counts too, as it did.
            const now = Math.floor(Date.now() / 1000)
            const leased = yield* Effect.flatMap(
              StorageLayers.Storage,
              (s) =>
                Effect.map(
                  s.list({ limit: JOBS }),
                  (jobs) =>
                    jobs.filter((j) => ["scheduled", "retrying", "dispatched", "running"].includes(jobState(j, now)))
                )
            )
            const leasedAtKill = new Set(leased.map((j) => Buffer.from(j.arg).toString()))
            assert.isAbove(yield* remaining, 0, "killed with jobs left")

            // At least once: a job that had run may run again after the restart only if its row
            // was leased (in flight, its completion not yet stored) when the process was killed.
            // Checked at every poll, so a run of duplicates fails here, not as a timeout.
            const ranAgainUnleased = () =>
              [...runsAtKill].filter(([text, n]) => runs.get(text)! > n && !leasedAtKill.has(text)).map(([text]) =>
                text
              )
            const second = yield* startUp(db, port)
            yield* eventually(
              Effect.flatMap(remaining, (n) => {
                const bad = ranAgainUnleased()
                return bad.length > 0
                  ? Effect.dieMessage(
                    `${bad.length} job(s) ran again though not leased at the kill (of ${leasedAtKill.size} leased), ` +
                      `e.g. ${bad.slice(0, 3).join(", ")}`
                  )
                  : Effect.succeed(n === 0 && runs.size === JOBS)
              }),
              "every job to run after the restart",
              120_000
            )
            assert.deepStrictEqual(ranAgainUnleased(), [], "ran again though not leased at the kill")
            const stopped = yield* second.stop("SIGTERM")
            assert.strictEqual(stopped.code, 0, stopped.stderr)
          }).pipe(Effect.scoped, Effect.provide(services))
          assert.strictEqual(runs.size, JOBS)
          assert.isTrue([...runs.keys()].every((k) => k.startsWith("direct ") || k.startsWith("injected ")))
        }),
      { timeout: 300_000 }
    )

    it.scopedLive("prints where to connect and refuses a taken port with one line and exit 1", () =>
      Effect.gen(function*() {
        const { db } = yield* target.make
        const port = yield* freePort
        const up = yield* startUp(db, port)
        const taken = yield* garivini("up", "--db", db, "--listen", `127.0.0.1:${port}`)
        assert.strictEqual(taken.code, 1)
        assert.include(taken.stderr, `cannot listen on 127.0.0.1:${port}`)
        const bad = yield* garivini("up", "--db", db, "--listen", "not-a-port")
        assert.strictEqual(bad.code, 2)
        const stopped = yield* up.stop("SIGTERM")
        assert.strictEqual(stopped.code, 0, stopped.stderr)
      }))
  })
}

describe("garivini up with job servers given", () => {
  it.scopedLive("runs its roles over them and starts no embedded server", () =>
    Effect.gen(function*() {
      const gd = yield* gearmand
      const filename = path.join(yield* tempDir("garivini-up-ext-"), "garivini.db")
      const up = yield* background("up", "--db", `sqlite:${filename}`, "--gearmand", gd.server)
      yield* eventually(
        Effect.map(up.output, (o) => o.includes("clients and workers connect to")),
        "garivini up to be ready"
      )
      assert.include(yield* up.output, `job servers ${gd.server}`)
      assert.notInclude(yield* up.output, "(embedded)")
      // The web console, printed with the other addresses (on a free port: GARIVINI_WEB_LISTEN).
      const consoleUrl = /web console at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(yield* up.output)?.[1]
      assert.isDefined(consoleUrl)
      const overview = yield* Effect.promise(() =>
        fetch(`${consoleUrl}api/overview`).then((r) =>
          r.json() as Promise<{ servers: ReadonlyArray<{ server: string; up: boolean }> }>
        )
      )
      assert.deepStrictEqual(overview.servers.map((s) => [s.server, s.up]), [[
        gd.server,
        true
      ]])
      const ran: Array<string> = []
      yield* Effect.gen(function*() {
        yield* Worker.serve({ [FUNCTION]: (job) => Effect.sync(() => void ran.push(job.text)) })
        const gearman = yield* Gearman.Gearman
        yield* gearman.submit(INJECT_FUNCTION, JSON.stringify({ funcname: FUNCTION, arg: "through gearmand" }))
        yield* eventually(Effect.sync(() => ran.length === 1), "the injected job to run")
      }).pipe(
        Effect.scoped,
        Effect.provide(
          Layer.mergeAll(Layer.orDie(StorageLayers.layerSqlite({ filename })), Gearman.layer({ servers: [gd.server] }))
        )
      )
      assert.deepStrictEqual(ran, ["through gearmand"])
      assert.strictEqual((yield* up.stop("SIGTERM")).code, 0)
    }))
})

describe("garivini gearmand", () => {
  it.scopedLive("serves the C gearman CLI (a worker and a client) and gearadmin, and stops on SIGTERM with exit 0", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const server = yield* background(
        "gearmand",
        "--listen",
        String(port),
        "--max-queue",
        "10",
        "--max-queue-bytes",
        "2000"
      )
      yield* eventually(
        Effect.map(server.output, (o) => o.includes(`listening on 127.0.0.1:${port}`)),
        "garivini gearmand to listen"
      )
      // `gearman -w` as the worker (it runs `rev` per job), `gearman` as the client.
      yield* gearmanWorker(port, "reverse", ["rev"])
      yield* eventually(
        Effect.map(
          gearadminStatus(port),
          (o) => /^reverse\t0\t0\t1$/m.test(o)
        ),
        "the CLI worker to register"
      )
      const reversed = yield* gearmanClient(port, ["-f", "reverse", "embedded"])
      assert.strictEqual(reversed.trim(), "deddebme")
      for (let i = 0; i < 10; i++)
        yield* gearmanClient(port, ["-b", "-f", "queued_only", `job ${i}`])
      // The CLI reports the refusal on stderr (and exits 0).
      const refused = yield* gearmanClient(port, ["-b", "-f", "queued_only", "one too many"], { both: true })
      assert.include(refused, "QUEUE_ERROR:Job queue is full")
      const status = yield* gearadminStatus(port)
      assert.match(status, /^queued_only\t10\t0\t0$/m)
      // --max-queue-bytes: a job bigger than a function may hold is refused the same way.
      const tooBig = yield* gearmanClient(port, ["-b", "-f", "big_only", "x".repeat(3000)], { both: true })
      assert.include(tooBig, "QUEUE_ERROR:Job queue is full")
      const stopped = yield* server.stop("SIGTERM")
      assert.strictEqual(stopped.code, 0, stopped.stderr)
    }))
})

describe("up's live counts", () => {
  it.scopedLive("due and scheduled from the store, running from the job server, done and failed as the embedded server saw them", () =>
    Effect.gen(function*() {
      const server = yield* serve({ port: 0, uncounted: INTERNAL_FUNCTIONS })
      const services = Layer.mergeAll(
        StorageLayers.layerMemory({ shards: [1] }),
        Gearman.layer({ servers: [server.address] })
      )
      yield* Effect.gen(function*() {
        yield* Client.insertJobs([{ funcname: "later", runAt: "+600" }, { funcname: "now" }, { funcname: "now" }])
        const gearman = yield* Gearman.Gearman
        yield* gearman.serve({
          ok: () => Effect.succeed("ok"),
          bad: () => Effect.die("boom"),
          [INJECT_FUNCTION]: () => Effect.succeed("{}")
        })
        yield* gearman.submit("ok", "1")
        yield* Effect.flip(gearman.submit("bad", "2"))
        yield* gearman.submit(INJECT_FUNCTION, "{}")
        const counts = yield* upCounts(Option.some(server))
        assert.deepStrictEqual(counts, { due: 2, scheduled: 1, running: 0, done: 1, failed: 1 })
        const external = yield* upCounts(Option.none())
        assert.strictEqual(external.done, undefined)
      }).pipe(Effect.scoped, Effect.provide(services))
    }))
})
