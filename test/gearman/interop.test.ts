// Interop with code nobody here wrote: the C `gearman` CLI as client of our worker and as
// worker for our client, and `gearadmin --status` against our admin parser.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import { parseStatus } from "../../src/protocol/admin.js"
import { WorkException } from "../../src/gearman/errors.js"
import { makeMemoryServers, Gearman, layerMemory } from "../../src/gearman/Gearman.js"
import { embeddedJobServer } from "./embedded.js"
import { gearadminStatus, gearmanClient, gearmanWorker } from "../support/tools.js"
import { gearmand, live } from "./gearmand.js"

describe("interop with the C tools", () => {
  it.scopedLive("the gearman CLI as a client of our worker (foreground and background)", () =>
    Effect.gen(function*() {
      const server = yield* gearmand
      const gearman = yield* live([server.server])
      const seen: Array<string> = []
      yield* gearman.serve({
        reverse: (job) => Effect.sync(() => seen.push(job.text())).pipe(Effect.as([...job.text()].reverse().join(""))),
        shout: (job) => job.sendData("chunk:").pipe(Effect.as(job.text().toUpperCase()))
      })
      const out = yield* gearmanClient(server.port, ["-f", "reverse", "hello gearman"])
      assert.strictEqual(out, "namraeg olleh")
      const shout = yield* gearmanClient(server.port, ["-f", "shout", "quiet"])
      assert.strictEqual(shout, "chunk:QUIET")
      yield* gearmanClient(server.port, ["-b", "-f", "reverse", "in the background"])
      yield* Effect.gen(function*() {
        while (!seen.includes("in the background")) yield* Effect.sleep("20 millis")
      }).pipe(Effect.timeout("30 seconds"))
    }))

  it.scopedLive("the gearman CLI as a worker for our client", () =>
    Effect.gen(function*() {
      const server = yield* gearmand
      const gearman = yield* live([server.server])
      // `gearman -w` pipes each job's payload through the command; -c 2 exits after two jobs.
      yield* gearmanWorker(server.port, "upper", ["tr", "a-z", "A-Z"], { count: 2 })
      const first = yield* gearman.submit("upper", "hello from typescript")
      assert.strictEqual(first.data.toString(), "HELLO FROM TYPESCRIPT")
      const second = yield* gearman.submit("upper", Buffer.from("bytes\n"), { priority: "high", unique: "u-1" })
      assert.strictEqual(second.data.toString(), "BYTES\n")
    }))

  it.scopedLive("gearadmin --status agrees with our admin parser", () =>
    Effect.gen(function*() {
      const server = yield* gearmand
      const gearman = yield* live([server.server])
      for (let i = 0; i < 5; i++) yield* gearman.submitBackground("queued_a", `a${i}`)
      yield* gearman.submitBackground("queued_b", "b", { priority: "low" })
      yield* gearman.serve({ registered_only: () => Effect.void }, { concurrency: 2, connectionsPerServer: 2 })
      yield* Effect.gen(function*() {
        while (((yield* gearman.queueDepths()).get("registered_only")?.workers ?? 0) < 2)
          yield* Effect.sleep("20 millis")
      }).pipe(Effect.timeout("30 seconds"))
      const text = yield* gearadminStatus(server.port)
      const parsed = parseStatus(text.split("\n").filter((l) => l.length > 0))
      assert.isTrue(Either.isRight(parsed), text)
      const fromCli = Either.getOrThrow(parsed)
      const ours = yield* gearman.admin.status(server.server)
      const byName = (rows: typeof ours) => [...rows].sort((a, b) => a.name.localeCompare(b.name))
      assert.deepStrictEqual(byName(fromCli), byName(ours))
      assert.deepStrictEqual(
        byName(ours).map((r) => [r.name, r.total, r.running, r.workers]),
        [
          ["queued_a", 5, 0, 0],
          ["queued_b", 1, 0, 0],
          ["registered_only", 0, 0, 2]
        ]
      )
    }))

  it.scopedLive("the gearman CLI and gearadmin against our in-process job server served over TCP", () =>
    Effect.gen(function*() {
      const server = yield* embeddedJobServer()
      const gearman = yield* live([server.server])
      yield* gearman.serve({ reverse: (job) => Effect.succeed([...job.text()].reverse().join("")) })
      const out = yield* gearmanClient(server.port, ["-f", "reverse", "embedded"])
      assert.strictEqual(out, "deddebme")
      yield* gearmanClient(server.port, ["-b", "-f", "nobody_serves", "x"])
      const status = yield* gearadminStatus(server.port)
      const rows = Either.getOrThrow(parseStatus(status.split("\n").filter((l) => l.length > 0)))
      assert.deepStrictEqual(rows.find((r) => r.name === "nobody_serves"), {
        name: "nobody_serves",
        total: 1,
        running: 0,
        workers: 0
      })
      assert.deepStrictEqual(rows.find((r) => r.name === "reverse"), {
        name: "reverse",
        total: 0,
        running: 0,
        workers: 1
      })
    }))
})

describe("options", () => {
  const exceptionsOff = [
    ["in memory", Effect.map(Layer.build(layerMemory({ exceptions: false })), Context.get(Gearman))],
    ["gearmand", Effect.flatMap(gearmand, (s) => live([s.server], { exceptions: false }))]
  ] as const
  for (const [name, service] of exceptionsOff) {
    it.scopedLive(`without the exceptions option a WORK_EXCEPTION reaches the client as WORK_FAIL (${name})`, () =>
      Effect.gen(function*() {
        const gearman = yield* service
        yield* gearman.serve({ throws: () => Effect.fail(new WorkException({ data: "details" })) })
        const error = yield* Effect.flip(gearman.submit("throws", "x"))
        assert.strictEqual(error._tag, "GearmanJobFailed")
      }))
  }

  it.scopedLive("memory servers can be shared between services: one submits, another serves", () =>
    Effect.gen(function*() {
      const servers = makeMemoryServers(["m1", "m2"])
      const client = Context.get(yield* Layer.build(layerMemory({ servers })), Gearman)
      const worker = Context.get(yield* Layer.build(layerMemory({ servers })), Gearman)
      yield* worker.serve({ twice: (job) => Effect.succeed(job.text() + job.text()) })
      const results = yield* Effect.forEach(["a", "b", "c", "d"], (p) => client.submit("twice", p))
      assert.deepStrictEqual(results.map((r) => r.data.toString()), ["aa", "bb", "cc", "dd"])
      assert.strictEqual(new Set(results.map((r) => r.handle.server)).size, 2)
    }))
})
