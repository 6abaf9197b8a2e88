// The Gearman service's contract, as a function of a layer: run once against the in-memory
// job server and once against a real gearmand. Each test uses its own function names, so
// the tests can share one server.
import { assert, layer } from "@effect/vitest"
import type { Layer } from "effect"
import { Deferred, Effect, Exit, Fiber, Metric, Ref, Scope } from "effect"
import { WorkException, WorkFail } from "../../src/gearman/errors.js"
import { Gearman } from "../../src/gearman/Gearman.js"
import { jobsProcessed } from "../../src/gearman/metrics.js"
import type { Handlers, ServeOptions } from "../../src/gearman/GearmanWorker.js"
import { eventually } from "./gearmand.js"

let counter = 0
const fname = (what: string) => `${what}_${process.pid}_${++counter}_${Math.floor(Math.random() * 1e6)}`

const depth = (fn: string) =>
  Effect.flatMap(Gearman, (g) => g.queueDepths()).pipe(
    Effect.map((depths) => depths.get(fn) ?? { name: fn, total: 0, running: 0, workers: 0 }),
    Effect.orDie
  )

/** Counts handlers running at once around `body`, and the most seen; `running()` while inside. */
const concurrencyProbe = () => {
  let running = 0
  let max = 0
  return {
    running: () => running,
    max: () => max,
    around: <A, E, R>(body: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.suspend(() => {
        running++
        max = Math.max(max, running)
        return Effect.ensuring(body, Effect.sync(() => void running--))
      })
  }
}

/** Serves in a child scope that the caller closes to stop (or kill) the worker. */
const serveIn = (handlers: Handlers, options?: ServeOptions): Effect.Effect<Scope.CloseableScope, never, Gearman> =>
  Effect.gen(function*() {
    const gearman = yield* Gearman
    const scope = yield* Scope.make()
    yield* gearman.serve(handlers, options).pipe(Scope.extend(scope), Effect.orDie)
    return scope
  })

export const conformance = (name: string, gearmanLayer: Layer.Layer<Gearman>) =>
  layer(gearmanLayer, { excludeTestServices: true, timeout: "60 seconds" })(`Gearman conformance: ${name}`, (it) => {
    it.scoped("runs queued jobs high before normal before low, FIFO within a priority", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("prio")
        for (
          const [payload, priority] of [
            ["l1", "low"],
            ["n1", "normal"],
            ["h1", "high"],
            ["l2", "low"],
            ["n2", "normal"],
            ["h2", "high"]
          ] as const
        ) {
          yield* gearman.submitBackground(fn, payload, { priority })
        }
        const seen = yield* Ref.make<ReadonlyArray<string>>([])
        const done = yield* Deferred.make<void>()
        yield* gearman.serve({
          [fn]: (job) =>
            Ref.updateAndGet(seen, (s) => [...s, job.text()]).pipe(
              Effect.tap((s) => (s.length === 6 ? Deferred.succeed(done, undefined) : Effect.void)),
              Effect.asVoid
            )
        })
        yield* Deferred.await(done)
        assert.deepStrictEqual(yield* Ref.get(seen), ["h1", "h2", "n1", "n2", "l1", "l2"])
      }))

    it.scoped("coalesces jobs with the same unique id and gives the result to every waiter", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("uniq")
        const handleA = yield* Deferred.make<string>()
        const handleB = yield* Deferred.make<string>()
        const a = yield* gearman.submit(fn, "first", {
          unique: "same",
          onCreated: (h) => Deferred.succeed(handleA, h.handle)
        }).pipe(Effect.fork)
        const b = yield* gearman.submit(fn, "second", {
          unique: "same",
          onCreated: (h) => Deferred.succeed(handleB, h.handle)
        }).pipe(Effect.fork)
        const other = yield* gearman.submit(fn, "third", { unique: "other" }).pipe(Effect.fork)
        assert.strictEqual(yield* Deferred.await(handleA), yield* Deferred.await(handleB))
        const bg = yield* gearman.submitBackground(fn, "fourth", { unique: "same" })
        assert.strictEqual(bg.handle, yield* Deferred.await(handleA))
        const runs = yield* Ref.make(0)
        yield* gearman.serve({ [fn]: (job) => Ref.update(runs, (n) => n + 1).pipe(Effect.as(`ran ${job.text()}`)) })
        const [ra, rb, ro] = yield* Fiber.join(
          Fiber.zip(Fiber.zip(a, b), other).pipe(Fiber.map(([[x, y], z]) => [x, y, z] as const))
        )
        assert.strictEqual(ra.data.toString(), "ran first")
        assert.strictEqual(rb.data.toString(), "ran first")
        assert.strictEqual(ro.data.toString(), "ran third")
        assert.strictEqual(yield* Ref.get(runs), 2)
      }))

    it.scoped("delivers WORK_DATA, WARNING and STATUS, then COMPLETE, FAIL or EXCEPTION", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("fg")
        yield* gearman.serve({
          [fn]: (job) =>
            Effect.gen(function*() {
              switch (job.text()) {
                case "talk":
                  yield* job.sendData("a")
                  yield* job.sendStatus(1, 2)
                  yield* job.sendWarning("careful")
                  yield* job.sendData(Buffer.from([0, 1, 0]))
                  return Buffer.from("done\0with nul")
                case "fail":
                  return yield* new WorkFail({ reason: "asked to" })
                case "exception":
                  return yield* new WorkException({ data: "boom" })
                case "defect":
                  return yield* Effect.die(new Error("handler bug"))
                default:
                  return undefined
              }
            })
        })
        const events: Array<string> = []
        const talk = yield* gearman.submit(fn, "talk", { onEvent: (e) => Effect.sync(() => events.push(e._tag)) })
        assert.deepStrictEqual(talk.chunks.map((c) => [...c]), [[97], [0, 1, 0]])
        assert.deepStrictEqual(talk.warnings.map(String), ["careful"])
        assert.deepStrictEqual(talk.status, { numerator: "1", denominator: "2" })
        assert.strictEqual(talk.data.toString("latin1"), "done\0with nul")
        assert.deepStrictEqual(events, ["Data", "Status", "Warning", "Data"])
        const fail = yield* Effect.flip(gearman.submit(fn, "fail"))
        assert.strictEqual(fail._tag, "GearmanJobFailed")
        const exception = yield* Effect.flip(gearman.submit(fn, "exception"))
        assert.strictEqual(exception._tag, "GearmanJobException")
        if (exception._tag === "GearmanJobException") assert.strictEqual(Buffer.from(exception.data).toString(), "boom")
        const defect = yield* Effect.flip(gearman.submit(fn, "defect"))
        assert.strictEqual(defect._tag, "GearmanJobFailed")
        // the worker survived the defect
        const after = yield* gearman.submit(fn, "nothing")
        assert.strictEqual(after.data.length, 0)
      }))

    it.scoped("runs background jobs, several at once", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("bg")
        const n = 200
        const seen = new Set<string>()
        const done = yield* Deferred.make<void>()
        const probe = concurrencyProbe()
        yield* gearman.serve(
          {
            [fn]: (job) =>
              Effect.gen(function*() {
                yield* probe.around(Effect.sleep("1 millis"))
                seen.add(job.text())
                if (seen.size === n) yield* Deferred.succeed(done, undefined)
              })
          },
          { concurrency: 4 }
        )
        const completed = Metric.value(Metric.tagged(jobsProcessed, "outcome", "complete"))
        const before = (yield* completed).count
        const handles = yield* Effect.forEach(Array.from({ length: n }, (_, i) => `job-${i}`), (p) =>
          gearman.submitBackground(fn, p), {
          concurrency: 16
        })
        assert.strictEqual(
          new Set(handles.map((h) =>
            h.handle
          )).size,
          n
        )
        yield* Deferred.await(done)
        yield* eventually(completed.pipe(Effect.map((c) => c.count - before >= n)), "the completion metric")
        assert.strictEqual(seen.size, n)
        assert.isAtMost(probe.max(), 4)
        assert.isAtLeast(probe.max(), 2)
      }))

    it.scoped("wakes a sleeping worker with NOOP when a job arrives", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("wake")
        // A poll interval far beyond the test's life: only a NOOP can wake this worker.
        yield* gearman.serve({ [fn]: (job) => Effect.succeed(job.text().toUpperCase()) }, {
          pollInterval: "1 hour",
          concurrency: 2
        })
        yield* eventually(depth(fn).pipe(Effect.map((d) => d.workers === 1)), "worker registration")
        for (const word of ["one", "two", "three"]) {
          const result = yield* gearman.submit(fn, word)
          assert.strictEqual(result.data.toString(), word.toUpperCase())
        }
      }))

    it.scoped("one connection runs several jobs at once, never more than the concurrency", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("multiplex")
        const n = 3
        const gate = yield* Deferred.make<void>()
        const probe = concurrencyProbe()
        yield* gearman.serve(
          {
            [fn]: (job) =>
              probe.around(Effect.gen(function*() {
                // Every job waits until n run at once: only a connection holding several gets there.
                if (probe.running() === n) yield* Deferred.succeed(gate, undefined)
                yield* Deferred.await(gate)
                return `done ${job.text()}`
              }))
          },
          { concurrency: n, pollInterval: "1 hour" }
        )
        yield* eventually(depth(fn).pipe(Effect.map((d) => d.workers === 1)), "worker registration")
        // One more job than slots: the fourth waits for a free slot, then runs.
        const results = yield* Effect.forEach(["a", "b", "c", "d"], (p) => gearman.submit(fn, p), {
          concurrency: "unbounded"
        })
        assert.deepStrictEqual(results.map((r) => r.data.toString()), ["done a", "done b", "done c", "done d"])
        assert.strictEqual(probe.max(), n)
        const d = yield* depth(fn)
        assert.deepStrictEqual([d.workers, d.total, d.running], [1, 0, 0])
      }))

    it.scoped("a function with a timeout gets a connection per job slot", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("timed")
        yield* gearman.serve({ [fn]: { handler: (job) => Effect.succeed(job.text()), timeout: "10 seconds" } }, {
          concurrency: 3
        })
        yield* eventually(depth(fn).pipe(Effect.map((d) => d.workers === 3)), "three registrations")
        assert.strictEqual((yield* gearman.submit(fn, "x")).data.toString(), "x")
      }))

    it.scoped("CAN_DO_TIMEOUT (ASCII ms): a job held past it goes back to the queue and runs again; the late result is refused harmlessly", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("timed_out")
        let attempts = 0
        const releaseFirst = yield* Deferred.make<void>()
        yield* gearman.serve(
          {
            [fn]: {
              timeout: "1 second",
              handler: () =>
                Effect.suspend(() => {
                  const n = ++attempts
                  return n === 1
                    ? Deferred.await(releaseFirst).pipe(Effect.as("attempt 1, late"))
                    : Effect.succeed(`attempt ${n}`)
                })
            }
          },
          { concurrency: 2, shutdownTimeout: 0 }
        )
        assert.strictEqual((yield* gearman.submit(fn, "x")).data.toString(), "attempt 2")
        // The first attempt's WORK_COMPLETE now comes for a job its connection no longer holds.
        yield* Deferred.succeed(releaseFirst, undefined)
        assert.strictEqual((yield* gearman.submit(fn, "y")).data.toString(), "attempt 3")
        yield* eventually(
          depth(fn).pipe(Effect.map((d) => d.total === 0 && d.running === 0)),
          "nothing left queued or running"
        )
      }))

    it.scoped("requeues a job whose worker vanishes mid-job; another worker finishes it", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("requeue")
        const started = yield* Deferred.make<void>()
        const doomed = yield* serveIn({
          [fn]: () => Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.never))
        }, { shutdownTimeout: 0 })
        const result = yield* gearman.submit(fn, "payload").pipe(Effect.fork)
        yield* Deferred.await(started)
        const d = yield* depth(fn)
        assert.deepStrictEqual([d.total, d.running], [1, 1])
        // The worker dies without answering; the server must hand the job to the next one.
        yield* Scope.close(doomed, Exit.void)
        yield* gearman.serve({ [fn]: (job) => Effect.succeed(`rescued ${job.text()}`) })
        assert.strictEqual((yield* Fiber.join(result)).data.toString(), "rescued payload")
      }))

    it.scoped("stops gracefully: no new grabs, the in-flight job finishes and its result is flushed", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("graceful")
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const worker = yield* serveIn({
          [fn]: (job) =>
            Deferred.succeed(started, undefined).pipe(
              Effect.zipRight(Deferred.await(release)),
              Effect.as(`finished ${job.text()}`)
            )
        })
        const result = yield* gearman.submit(fn, "in flight").pipe(Effect.fork)
        yield* Deferred.await(started)
        const stopping = yield* Scope.close(worker, Exit.void).pipe(Effect.fork)
        yield* gearman.submitBackground(fn, "queued during stop")
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(stopping)
        assert.strictEqual((yield* Fiber.join(result)).data.toString(), "finished in flight")
        // The stopped worker took nothing new: the second job is still queued, with no worker.
        yield* eventually(depth(fn).pipe(Effect.map((d) => d.workers === 0)), "worker gone")
        assert.deepStrictEqual(yield* depth(fn), { name: fn, total: 1, running: 0, workers: 0 })
      }))

    it.scoped("reports status, prioritystatus and workers figures", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const server = gearman.servers[0]!
        const fn = fname("admin")
        yield* gearman.submitBackground(fn, "a", { priority: "high" })
        yield* gearman.submitBackground(fn, "b", { priority: "low" })
        yield* gearman.submitBackground(fn, "c", { priority: "low" })
        assert.deepStrictEqual(yield* depth(fn), { name: fn, total: 3, running: 0, workers: 0 })
        const prio = (yield* gearman.admin.priorityStatus(server)).find((p) => p.name === fn)
        assert.deepStrictEqual(prio, { name: fn, high: 1, normal: 0, low: 2, workers: 0 })
        const release = yield* Deferred.make<void>()
        const started = yield* Deferred.make<void>()
        const worker = yield* serveIn(
          { [fn]: () => Deferred.succeed(started, undefined).pipe(Effect.zipRight(Deferred.await(release))) },
          { clientId: "conformance-worker" }
        )
        yield* Deferred.await(started)
        assert.deepStrictEqual(yield* depth(fn), { name: fn, total: 3, running: 1, workers: 1 })
        const workers = yield* gearman.admin.workers(server)
        assert.isTrue(workers.some((w) => w.clientId === "conformance-worker" && w.functions.includes(fn)))
        yield* Deferred.succeed(release, undefined)
        yield* eventually(depth(fn).pipe(Effect.map((d) => d.total === 0)), "queue drained")
        yield* Scope.close(worker, Exit.void)
        yield* eventually(depth(fn).pipe(Effect.map((d) => d.workers === 0)), "worker gone")
        assert.isString(yield* gearman.admin.version(server))
        assert.isAbove(yield* gearman.admin.getPid(server), 0)
      }))

    it.scoped("maxqueue refuses new jobs over the limit with QUEUE_ERROR; a coalescing one still gets in", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const server = gearman.servers[0]!
        const fn = fname("maxq")
        const first = yield* gearman.submitBackground(fn, "a", { unique: "q1" })
        yield* gearman.admin.maxQueue(server, fn, 1)
        const full = yield* Effect.flip(gearman.submitBackground(fn, "b"))
        assert.strictEqual(full._tag === "GearmanServerError" ? full.code : full._tag, "QUEUE_ERROR")
        assert.deepStrictEqual(yield* gearman.submitBackground(fn, "c", { unique: "q1" }), first)
        yield* gearman.admin.maxQueue(server, fn)
        yield* gearman.submitBackground(fn, "d")
        assert.strictEqual((yield* depth(fn)).total, 2)
      }))

    it.scoped("a submit with a timeout gives up with GearmanJobTimeout; one answered in time is unaffected", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("timeout")
        const started = yield* Deferred.make<void>()
        yield* gearman.serve({
          [fn]: (job) =>
            job.text() === "stuck"
              ? Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.never))
              : Effect.succeed(`ok ${job.text()}`)
        }, { concurrency: 2, shutdownTimeout: 0 })
        // Generous where the answer is expected: a loaded machine must not turn it into a timeout.
        assert.strictEqual((yield* gearman.submit(fn, "quick", { timeout: "20 seconds" })).data.toString(), "ok quick")
        const submitted = Date.now()
        const stuck = yield* gearman.submit(fn, "stuck", { timeout: "300 millis" }).pipe(Effect.fork)
        yield* Deferred.await(started)
        const error = yield* Effect.flip(Fiber.join(stuck))
        assert.strictEqual(error._tag, "GearmanJobTimeout")
        assert.include(error.message, "within 300 ms")
        // Never before the deadline (it may come a little after: the check runs every tenth of it).
        assert.isAtLeast(Date.now() - submitted, 300)
        // The connection is still good for the next job.
        assert.strictEqual((yield* gearman.submit(fn, "after", { timeout: "20 seconds" })).data.toString(), "ok after")
      }))

    it.scoped("cancels a queued job: its waiting client gets WORK_FAIL", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("cancel")
        const created = yield* Deferred.make<string>()
        const fiber = yield* gearman.submit(fn, "x", { onCreated: (h) => Deferred.succeed(created, h.handle) }).pipe(
          Effect.fork
        )
        const handle = yield* Deferred.await(created)
        const jobs = yield* gearman.admin.showJobs(gearman.servers[0]!)
        assert.isTrue(jobs.some((j) => j.handle === handle && !j.ignored))
        yield* gearman.admin.cancelJob(gearman.servers[0]!, handle)
        const error = yield* Effect.flip(Fiber.join(fiber))
        assert.strictEqual(error._tag, "GearmanJobFailed")
        const unknown = yield* Effect.flip(gearman.admin.cancelJob(gearman.servers[0]!, "H:no:such"))
        assert.strictEqual(unknown._tag, "GearmanAdminError")
      }))

    it.scoped("answers getStatus for a running job and rejects an oversized unique", () =>
      Effect.gen(function*() {
        const gearman = yield* Gearman
        const fn = fname("status")
        const release = yield* Deferred.make<void>()
        const started = yield* Deferred.make<void>()
        yield* gearman.serve({
          [fn]: (job) =>
            job.sendStatus(3, 7).pipe(
              Effect.zipRight(Deferred.succeed(started, undefined)),
              Effect.zipRight(Deferred.await(release))
            )
        })
        const handle = yield* gearman.submitBackground(fn, "x")
        yield* Deferred.await(started)
        yield* eventually(
          gearman.getStatus(handle).pipe(
            Effect.map((s) => s.known && s.running && s.numerator === "3" && s.denominator === "7"),
            Effect.orDie
          ),
          "status 3/7"
        )
        yield* Deferred.succeed(release, undefined)
        yield* eventually(gearman.getStatus(handle).pipe(Effect.map((s) => !s.known), Effect.orDie), "job gone")
        const tooLong = yield* Effect.flip(gearman.submitBackground(fn, "x", { unique: "u".repeat(65) }))
        assert.strictEqual(tooLong._tag, "GearmanServerError")
        if (tooLong._tag === "GearmanServerError") assert.strictEqual(tooLong.code, "ARGUMENT_TOO_LARGE")
      }))
  })
