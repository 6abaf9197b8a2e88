// The example of docs/embedding.md, kept as a test: a host application running a QueueRunner and
// its workers as supervised Layers in its own process (here over the memory layers; production
// swaps in Storage.layer and Gearman.layer).
import { assert, it } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import { Client, Gearman, QueueRunner, Storage, Supervise, Worker } from "../../src/index.js"

const processed: Array<string> = []

// The app's workers and a QueueRunner, each a Layer that runs, supervised, for the life of the app.
const Workers = Worker.layer({ resize: (job) => Effect.sync(() => void processed.push(job.text)) }, { concurrency: 8 })
const Runner = QueueRunner.layer({ batchRunSleep: "50 millis" })

/** The app over whichever Storage and Gearman it is given; Client stays usable beside it. */
const App = <E>(services: Layer.Layer<Storage.Storage | Gearman.Gearman, E>) =>
  Layer.mergeAll(Workers, Runner).pipe(Layer.provideMerge(services), Layer.provideMerge(Supervise.layer))

const memory = () => Layer.mergeAll(Storage.layerMemory(), Gearman.layerMemory())

it.scopedLive("an app embedding a QueueRunner and its workers runs the jobs its Client stores", () =>
  Effect.gen(function*() {
    yield* Client.insertJobs(["a.png", "b.png", "c.png"].map((arg) => ({ funcname: "resize", arg })))
    const storage = yield* Storage.Storage
    yield* Effect.map(storage.counts(), (c) => c.length === 0).pipe(
      Effect.filterOrFail((done) => done, () => "jobs still stored"),
      Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("10 seconds")))
    )
    assert.deepStrictEqual([...processed].sort(), ["a.png", "b.png", "c.png"])
  }).pipe(Effect.provide(App(memory()))))

it.scopedLive("the app's main waiting on Supervise.join fails with RoleFailed when a role gives up", () =>
  Effect.gen(function*() {
    // A role of the app whose loop always dies, with a short backoff and a low cap.
    const Doomed = Supervise.roleLayer("Doomed", Effect.die(new Error("bug")), {
      backoff: Schedule.spaced("1 millis"),
      maxRestarts: 3
    })
    const WithDoomed = Layer.mergeAll(Workers, Runner, Doomed).pipe(
      Layer.provideMerge(memory()),
      Layer.provideMerge(Supervise.layer)
    )
    const failure = yield* Effect.flip(Supervise.join.pipe(Effect.provide(WithDoomed)))
    if (failure._tag !== "RoleFailed") return assert.fail(`expected RoleFailed, got ${failure._tag}`)
    assert.deepStrictEqual([failure.role, failure.restarts], ["Doomed", 3])
  }))
