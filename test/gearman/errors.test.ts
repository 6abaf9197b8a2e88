// Errors say what happened and keep what caused them: every Gearman error renders a message of
// its own (never empty, never Effect's generic "An error has occurred"), and the construction
// sites that wrap a lower failure keep it as `cause` — through the real code paths, with
// transports that fail on purpose. A few Driver and CLI errors likewise. No server is needed:
// the job servers are in-process, and the TCP cases use loopback ports this test opens itself.
import { mkdtempSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Either, Metric, Option, ParseResult, Schema } from "effect"
import { InvalidJob } from "../../src/errors.js"
import { ConsoleUnavailable } from "../../src/driver/Console.js"
import { loadModule } from "../../src/driver/attributes.js"
import { readConfigFile } from "../../src/cli/config.js"
import { hold } from "../../src/cli/pidFile.js"
import { command } from "../../src/gearman/admin.js"
import * as Client from "../../src/gearman/GearmanClient.js"
import type { Transport } from "../../src/gearman/connection.js"
import { netTransport } from "../../src/gearman/connection.js"
import {
  GearmanAdminError,
  GearmanConnectionError,
  GearmanInvalidArgument,
  GearmanJobException,
  GearmanJobFailed,
  GearmanJobTimeout,
  GearmanNoServerAvailable,
  GearmanProtocolError,
  GearmanServerError,
  WorkException,
  WorkFail
} from "../../src/gearman/errors.js"
import { makeMemoryServers } from "../../src/gearman/Gearman.js"
import { memoryTransport } from "../../src/gearman/memoryTransport.js"
import { PacketType } from "../../src/protocol/gearman.js"
import { GearmanListenError, serve } from "../../src/jobserver/tcpServer.js"
import { freePort, GearmandUnavailable, startGearmand } from "../../src/testing/gearmandProcess.js"
import { decodeWorkerJson, encodeWorkerJson } from "../../src/Job.js"
import type { StoredJob } from "../../src/Job.js"
import * as JobClient from "../../src/roles/Client.js"
import { jobsDead } from "../../src/roles/metrics.js"
import { gearmanHandler, JobFailed, RetryAt } from "../../src/roles/Worker.js"
import { gearmanJobOf } from "../support/gearmanJob.js"
import type * as Worker from "../../src/roles/Worker.js"
import { loadDriver } from "../../src/storage/sql/sqlite.js"
import { layerMemory, Storage } from "../../src/storage/Storage.js"

/** The message says something, and so does the error as Effect prints a failure. */
const saysWhat = (error: Error, ...facts: ReadonlyArray<string>) => {
  assert.isAbove(error.message.trim().length, 0, `${error.name} has an empty message`)
  for (const fact of facts) assert.include(error.message, fact)
  const pretty = Cause.pretty(Cause.fail(error))
  assert.notInclude(pretty, "An error has occurred")
  assert.include(pretty, error.message.split("\n")[0]!)
}

const errnoCode = (e: unknown): unknown => typeof e === "object" && e !== null && "code" in e ? e.code : undefined

/** A loopback server that accepts connections and never answers; closed with the scope. */
const listening = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const server = Net.createServer((socket) => socket.on("error", () => undefined))
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)
const portOf = (server: Net.Server): number => {
  const address = server.address()
  return typeof address === "object" && address !== null ? address.port : 0
}

describe("Gearman errors: messages", () => {
  it("each class renders what happened", () => {
    saysWhat(
      new GearmanProtocolError({ reason: "BadMagic", message: "bad magic \"HTTP\" in a packet header" }),
      "bad magic"
    )
    saysWhat(
      new GearmanInvalidArgument({ message: "function name \"a b\" holds whitespace" }),
      "function name",
      "whitespace"
    )
    saysWhat(
      new GearmanConnectionError({ server: "h:4730", message: "connection to h:4730 closed" }),
      "h:4730",
      "closed"
    )
    saysWhat(
      new GearmanNoServerAvailable({ servers: ["a:1"], message: "no Gearman server could take a f job" }),
      "no Gearman server"
    )
    saysWhat(
      new GearmanServerError({ server: "h:4730", code: "ARGUMENT_TOO_LARGE", text: "argument too large" }),
      "h:4730",
      "ARGUMENT_TOO_LARGE",
      "argument too large"
    )
    saysWhat(new GearmanServerError({ server: "h:4730", code: "QUEUE_ERROR", text: "" }), "QUEUE_ERROR")
    saysWhat(new GearmanJobFailed({ handle: "H:x:7", functionName: "resize" }), "resize", "H:x:7", "failed")
    saysWhat(
      new GearmanJobException({ handle: "H:x:8", functionName: "resize", data: Buffer.from("disk full") }),
      "resize",
      "H:x:8",
      "exception",
      "disk full"
    )
    saysWhat(new GearmanJobTimeout({ handle: "", functionName: "resize", timeoutMs: 250 }), "resize", "250 ms")
    saysWhat(
      new GearmanAdminError({ server: "h:4730", command: "status", message: "ERR UNKNOWN_COMMAND" }),
      "UNKNOWN_COMMAND"
    )
    saysWhat(new WorkFail({ reason: "no such image" }), "no such image")
    saysWhat(new WorkFail({}), "failed")
    saysWhat(new WorkFail({ reason: "" }), "failed")
    saysWhat(new WorkException({ data: "out of memory" }), "exception", "out of memory")
    saysWhat(new WorkException({ data: Buffer.from("out of memory") }), "out of memory")
    saysWhat(new GearmanListenError({ address: "127.0.0.1:1", message: "cannot listen on 127.0.0.1:1" }), "listen")
    saysWhat(new GearmandUnavailable({ message: "cannot start gearmand (ENOENT)" }), "gearmand")
  })

  it("a large exception payload is quoted, bounded", () => {
    const error = new GearmanJobException({ handle: "H:x:9", functionName: "f", data: Buffer.alloc(100_000, 0x61) })
    assert.isBelow(error.message.length, 300)
    assert.include(error.message, "100000 UTF-16 units")
  })
})

describe("Gearman errors keep their cause", () => {
  it.scopedLive("a refused connection: GearmanConnectionError keeps the socket's error", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const error = yield* Effect.flip(
        netTransport().open(`127.0.0.1:${port}`, {
          onData: () => undefined,
          onClose: () => undefined
        })
      )
      assert.instanceOf(error, GearmanConnectionError)
      saysWhat(error, `127.0.0.1:${port}`)
      assert.instanceOf(error.cause, Error)
      assert.strictEqual(errnoCode(error.cause), "ECONNREFUSED")
    }))

  it.scopedLive("every server lost the submit: GearmanNoServerAvailable keeps the last connection error", () =>
    Effect.gen(function*() {
      const servers = makeMemoryServers(["memory"])
      const inner = memoryTransport(servers)
      const lost: Array<GearmanConnectionError> = []
      // The link drops as soon as a background submit is written, before JOB_CREATED.
      const dropping: Transport = {
        open: (server, handlers) =>
          Effect.map(
            inner.open(server, {
              ...handlers,
              onClose: (reason) => {
                lost.push(reason)
                handlers.onClose(reason)
              }
            }),
            (link) => ({
              ...link,
              write: (bytes) => {
                if (bytes.length >= 8 && bytes.readUInt32BE(4) === PacketType.SUBMIT_JOB_BG) {
                  link.destroy(new GearmanConnectionError({ server, message: `connection to ${server} dropped` }))
                  return true
                }
                return link.write(bytes)
              }
            })
          )
      }
      const client = yield* Client.make({ servers: ["memory"], transport: dropping })
      const error = yield* Effect.flip(client.submitBackground("resize", "x"))
      assert.instanceOf(error, GearmanNoServerAvailable)
      saysWhat(error, "resize")
      assert.instanceOf(error.cause, GearmanConnectionError)
      assert.include(lost, error.cause)
    }))

  it.scopedLive("an unreadable admin answer: GearmanAdminError keeps the parser's GearmanProtocolError", () =>
    Effect.gen(function*() {
      const garbage: Transport = {
        open: (_server, handlers) =>
          Effect.succeed({
            write: () => {
              queueMicrotask(() => handlers.onData(Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n")))
              return true
            },
            destroy: () => undefined
          })
      }
      const error = yield* Effect.flip(command(garbage, "web:80", "status"))
      assert.instanceOf(error, GearmanAdminError)
      saysWhat(error, "HTTP/1.1 400")
      assert.instanceOf(error.cause, GearmanProtocolError)
      assert.strictEqual((error.cause as GearmanProtocolError).reason, "Malformed")
    }))

  it.scopedLive("a port in use: GearmanListenError keeps the listen error", () =>
    Effect.gen(function*() {
      const taken = portOf(yield* listening)
      const error = yield* Effect.flip(serve({ host: "127.0.0.1", port: taken }))
      assert.instanceOf(error, GearmanListenError)
      saysWhat(error, `127.0.0.1:${taken}`)
      assert.strictEqual(errnoCode(error.cause), "EADDRINUSE")
    }))

  it.live("gearmand not installed: GearmandUnavailable keeps the spawn error", () =>
    Effect.gen(function*() {
      const path = process.env["PATH"]
      // An empty directory as the whole PATH: spawn cannot find gearmand.
      process.env["PATH"] = mkdtempSync(Path.join(tmpdir(), "garivini-nopath-"))
      const error = yield* Effect.flip(startGearmand(1)).pipe(
        Effect.ensuring(Effect.sync(() => (process.env["PATH"] = path)))
      )
      assert.instanceOf(error, GearmandUnavailable)
      saysWhat(error, "cannot start gearmand", "apt-get install")
      assert.strictEqual(errnoCode(error.cause), "ENOENT")
    }))
})

/** A job as the worker helper's Gearman handler receives it. */
const gearmanJob = (payload: string | Buffer) => gearmanJobOf(payload, "resize", "H:memory:1")

describe("the worker helper's outcomes say why and keep the cause", () => {
  const runHandler = (payload: string, handler: Worker.JobHandler) =>
    Effect.gen(function*() {
      const storage = yield* Storage
      return yield* Effect.flip(gearmanHandler(storage, () => Effect.void, "resize", handler)(gearmanJob(payload)))
    }).pipe(Effect.provide(layerMemory()))

  it("JobFailed and RetryAt render what the handler asked", () => {
    saysWhat(new JobFailed({ reason: "image too large" }), "image too large")
    saysWhat(new RetryAt({ when: "+60" }), "+60")
  })

  it.effect("a malformed worker JSON: the WORK_FAIL keeps the InvalidJob", () =>
    Effect.gen(function*() {
      const error = yield* runHandler("{\"jobid\":", () => Effect.void)
      assert.instanceOf(error, WorkFail)
      saysWhat(error, "malformed worker JSON")
      assert.instanceOf(error.cause, InvalidJob)
    }))

  it.effect("a worker JSON that names its row but does not decode: the decoder's reason is the row's last error", () =>
    Effect.gen(function*() {
      const storage = yield* Storage
      const { handle } = yield* JobClient.insertJob({ funcname: "resize" })
      const payload = JSON.stringify({ jobid: handle.jobid, dbid: handle.dbid, funcname: "resize", arg: 5 })
      const deadCount = Effect.map(Metric.value(jobsDead), (c) => c.count)
      const before = yield* deadCount
      const error = yield* Effect.flip(
        gearmanHandler(storage, () => Effect.void, "resize", () => Effect.void, 1)(gearmanJob(payload))
      )
      assert.instanceOf(error, WorkFail)
      const row = Option.getOrThrow(yield* storage.get(handle))
      assert.deepStrictEqual([row.failcount, row.ended, row.lastErrorAttempt], [1, "dead", 1])
      assert.include(row.lastError!, "malformed worker JSON")
      assert.strictEqual(yield* deadCount, before + 1, "counted in garivini_jobs_dead_total")
    }).pipe(Effect.provide(layerMemory())))

  it.effect("a handler's JobFailed: the WORK_FAIL keeps it", () =>
    Effect.gen(function*() {
      const job: StoredJob = {
        dbid: 1,
        jobid: 7,
        funcname: "resize",
        arg: Buffer.from("x"),
        uniqkey: null,
        coalesce: null,
        runAfter: 0,
        flag: "shim",
        failcount: 0
      }
      const failed = new JobFailed({ reason: "image too large" })
      const error = yield* runHandler(encodeWorkerJson(job), () => Effect.fail(failed))
      assert.instanceOf(error, WorkFail)
      saysWhat(error, "image too large")
      assert.strictEqual(error.cause, failed)
    }))
})

describe("Driver and CLI errors keep their cause", () => {
  it("a malformed worker JSON: InvalidJob keeps the Schema's ParseError", () => {
    const result = decodeWorkerJson("{\"jobid\":\"x\"}")
    assert.isTrue(Either.isLeft(result))
    if (Either.isRight(result)) return
    saysWhat(result.left, "malformed worker JSON")
    assert.isTrue(ParseResult.isParseError(result.left.cause))
  })

  it.effect("the SQLite driver cannot be imported: SqliteDriverMissing keeps the import's error", () =>
    Effect.gen(function*() {
      const missing = "@effect/sql-sqlite-node-missing/SqliteClient"
      const error = yield* Effect.flip(loadDriver(() => import(/* @vite-ignore */ missing)))
      saysWhat(error, "cannot be loaded", "npm install")
      assert.strictEqual(errnoCode(error.cause), "ERR_MODULE_NOT_FOUND")
    }))

  it.effect("a worker module that cannot load: ConfigInvalid keeps the import's error", () =>
    Effect.gen(function*() {
      const missing = Path.join(tmpdir(), "garivini-no-such-module.mjs")
      const error = yield* Effect.flip(loadModule(missing))
      saysWhat(error, "cannot load", missing)
      assert.instanceOf(error.cause, Error)
      assert.strictEqual(errnoCode(error.cause), "ERR_MODULE_NOT_FOUND")
    }))

  it("the console cannot listen: ConsoleUnavailable says where and keeps the error", () => {
    const cause = Object.assign(new Error("listen EADDRINUSE"), { code: "EADDRINUSE" })
    const error = new ConsoleUnavailable({ address: "127.0.0.1:47300", reason: cause.message, cause })
    saysWhat(error, "127.0.0.1:47300", "EADDRINUSE")
    assert.strictEqual(error.cause, cause)
  })

  it("a config file: unreadable, not YAML, or not the schema: ConfigInvalid keeps why", () => {
    const dir = mkdtempSync(Path.join(tmpdir(), "garivini-config-"))
    const Shape = Schema.Struct({ port: Schema.Number })
    const missing = readConfigFile(Path.join(dir, "missing.yaml"), Shape)
    assert.isTrue(Either.isLeft(missing))
    if (Either.isLeft(missing)) {
      saysWhat(missing.left, "cannot read", "ENOENT")
      assert.strictEqual(errnoCode(missing.left.cause), "ENOENT")
    }
    const broken = Path.join(dir, "broken.json")
    writeFileSync(broken, "{ not json")
    const notJson = readConfigFile(broken, Shape)
    assert.isTrue(Either.isLeft(notJson))
    if (Either.isLeft(notJson)) {
      saysWhat(notJson.left, "is not valid JSON")
      assert.instanceOf(notJson.left.cause, SyntaxError)
    }
    const wrong = Path.join(dir, "wrong.yaml")
    writeFileSync(wrong, "port: eighty\n")
    const notSchema = readConfigFile(wrong, Shape)
    assert.isTrue(Either.isLeft(notSchema))
    if (Either.isLeft(notSchema)) {
      saysWhat(notSchema.left, "port")
      assert.isTrue(ParseResult.isParseError(notSchema.left.cause))
    }
  })

  it.scoped("a pid file that cannot be written: ConfigInvalid keeps the file system's error", () =>
    Effect.gen(function*() {
      const path = Path.join(tmpdir(), "garivini-no-such-dir", "x", "driver.pid")
      const error = yield* Effect.flip(hold(path))
      assert.strictEqual(error._tag, "ConfigInvalid")
      saysWhat(error, "cannot write", path)
      if (error._tag === "ConfigInvalid") assert.strictEqual(errnoCode(error.cause), "ENOENT")
    }))
})
