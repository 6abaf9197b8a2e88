// The example of docs/testing.md, kept as a test: a user testing their worker entirely in
// memory, through the public API only.
import { assert, it } from "@effect/vitest"
import { Effect, Layer, Option, Schedule } from "effect"
import { Client, Gearman, QueueRunner, Storage, Worker } from "../../src/index.js"

// The worker under test: doubles a number; a negative one is a failure (backed off, retried later).
const double = (job: Worker.WorkerJob) => {
  const n = Number(job.text)
  return n < 0 ? Worker.fail(`cannot double ${n}`) : Effect.succeed(String(n * 2))
}

// Everything in memory: no MySQL, no gearmand.
const TestLayer = Layer.mergeAll(Storage.layerMemory(), Gearman.layerMemory())

/** Retries `check` until it holds (a few seconds at most). */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  check.pipe(
    Effect.filterOrFail((ok) => ok, () => "not yet"),
    Effect.retry(Schedule.spaced("5 millis").pipe(Schedule.upTo("5 seconds")))
  )

it.scopedLive("double: a good job is done and its row deleted; a bad one is backed off", () =>
  Effect.gen(function*() {
    const results: Array<string> = []
    yield* Worker.serve({ double: (job) => Effect.tap(double(job), (r) => Effect.sync(() => results.push(r))) })

    const good = yield* Client.insertJob({ funcname: "double", arg: "21" })
    const bad = yield* Client.insertJob({ funcname: "double", arg: "-1" })

    // One QueueRunner round dispatches what is due.
    const runner = yield* QueueRunner.make()
    yield* runner.round

    const storage = yield* Storage.Storage
    yield* eventually(Effect.map(storage.get(good.handle), Option.isNone))
    assert.deepStrictEqual(results, ["42"])

    yield* eventually(Effect.map(storage.get(bad.handle), (job) => Option.isSome(job) && job.value.failcount === 1))
    const failed = Option.getOrThrow(yield* storage.get(bad.handle))
    const now = Math.floor(Date.now() / 1000)
    assert.isTrue(failed.runAfter - now > 100, "backed off about two minutes")
  }).pipe(Effect.provide(TestLayer)))
