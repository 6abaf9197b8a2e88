// The example of docs/embedding.md, kept as a test: a host application running a QueueRunner and
// its workers as Layers in its own process (here over the memory layers; production swaps in
// Storage.layer and Gearman.layer).
import { assert, it } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import { Client, Gearman, QueueRunner, Storage, Worker } from "../../src/index.js"

const processed: Array<string> = []

// The app's workers and a QueueRunner, each a Layer that runs for the life of the app.
const Workers = Layer.scopedDiscard(
  Worker.serve({ resize: (job) => Effect.sync(() => void processed.push(job.text)) }, { concurrency: 8 })
)
const Runner = Layer.scopedDiscard(Effect.forkScoped(QueueRunner.run({ batchRunSleep: "50 millis" })))

/** The app over whichever Storage and Gearman it is given; Client stays usable beside it. */
const App = <E>(services: Layer.Layer<Storage.Storage | Gearman.Gearman, E>) =>
  Layer.mergeAll(Workers, Runner).pipe(Layer.provideMerge(services))

it.scopedLive("an app embedding a QueueRunner and its workers runs the jobs its Client stores", () =>
  Effect.gen(function*() {
    yield* Client.insertJobs(["a.png", "b.png", "c.png"].map((arg) => ({ funcname: "resize", arg })))
    const storage = yield* Storage.Storage
    yield* Effect.map(storage.counts(), (c) => c.length === 0).pipe(
      Effect.filterOrFail((done) => done, () => "jobs still stored"),
      Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("10 seconds")))
    )
    assert.deepStrictEqual([...processed].sort(), ["a.png", "b.png", "c.png"])
  }).pipe(Effect.provide(App(Layer.mergeAll(Storage.layerMemory(), Gearman.layerMemory())))))
