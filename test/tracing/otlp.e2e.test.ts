// Traces across processes, as a user runs them: `garivini inject`, `garivini queue-runner` and a
// worker (`garivini consume`), each exporting over OTLP/HTTP to a receiver in this test; one
// job's spans from the three share one trace, parented insert → dispatch → run. With the
// variables unset, the worker JSON carries no traceparent.
import { createServer } from "node:http"
import type { Server } from "node:http"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { eventually, gearmandServer, live } from "../gearman/gearmand.js"
import { backgroundWithEnv, gariviniWithEnv } from "../support/cli.js"
import { tempDir } from "../support/files.js"

const AnyValue = Schema.Struct({
  stringValue: Schema.optional(Schema.String),
  intValue: Schema.optional(Schema.Union(Schema.Number, Schema.String)),
  boolValue: Schema.optional(Schema.Boolean)
})
const Attribute = Schema.Struct({ key: Schema.String, value: AnyValue })
const Span = Schema.Struct({
  traceId: Schema.String,
  spanId: Schema.String,
  parentSpanId: Schema.optional(Schema.String),
  name: Schema.String,
  attributes: Schema.Array(Attribute)
})
const ExportRequest = Schema.parseJson(Schema.Struct({
  resourceSpans: Schema.Array(Schema.Struct({
    resource: Schema.Struct({ attributes: Schema.Array(Attribute) }),
    scopeSpans: Schema.Array(Schema.Struct({ spans: Schema.Array(Span) }))
  }))
}))

interface Received {
  readonly service: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly attributes: Readonly<Record<string, string>>
}

const text = (v: typeof AnyValue.Type): string => String(v.stringValue ?? v.intValue ?? v.boolValue ?? "")

/** An OTLP/HTTP JSON receiver on a free loopback port (closed with the scope): the spans it got. */
const receiver = Effect.gen(function*() {
  const spans: Array<Received> = []
  const bad: Array<string> = []
  const server: Server = createServer((req, res) => {
    let body = ""
    req.on("data", (d: Buffer) => (body += d.toString()))
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces") bad.push(`${req.method} ${req.url}`)
      else {
        try {
          for (const rs of Schema.decodeUnknownSync(ExportRequest)(body).resourceSpans) {
            const service = text(rs.resource.attributes.find((a) => a.key === "service.name")!.value)
            for (const ss of rs.scopeSpans) {
              for (const s of ss.spans) {
                spans.push({
                  service,
                  traceId: s.traceId,
                  spanId: s.spanId,
                  parentSpanId: s.parentSpanId,
                  name: s.name,
                  attributes: Object.fromEntries(s.attributes.map((a) => [a.key, text(a.value)]))
                })
              }
            }
          }
        } catch (e) {
          bad.push(`${req.headers["content-type"]}: ${String(e).slice(0, 300)}`)
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  return { port, spans, bad }
})

describe("traces over OTLP/HTTP", () => {
  it.scopedLive(
    "one job's spans from inject, queue-runner and the worker share one trace: insert → dispatch → run",
    () =>
      Effect.gen(function*() {
        const otlp = yield* receiver
        const server = yield* gearmandServer
        const db = `sqlite:${path.join(yield* tempDir("garivini-otlp-"), "garivini.db")}`
        const env = {
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlp.port}`,
          OTEL_BSP_SCHEDULE_DELAY: "100",
          GARIVINI_LOG_FORMAT: "json"
        }
        // The file is made (and migrated) by the first command, before the others open it.
        const stored = yield* gariviniWithEnv(env, "inject", "--db", db, "--count", "1", "--function", "traced_fn")
        assert.strictEqual(stored.code, 0, stored.stderr)
        const worker = yield* backgroundWithEnv(
          env,
          "consume",
          "--db",
          db,
          "--gearmand",
          server,
          "--function",
          "traced_fn"
        )
        const runner = yield* backgroundWithEnv(env, "queue-runner", "--db", db, "--gearmand", server)
        yield* eventually(
          Effect.sync(() => otlp.spans.some((s) => s.name === "garivini.run")),
          "the worker's run span"
        )
        const ran = yield* worker.output
        yield* runner.stop("SIGTERM")
        yield* worker.stop("SIGTERM")
        assert.deepStrictEqual(otlp.bad, [])
        assert.include(ran, "Hay it's a job")

        const insert = otlp.spans.find((s) => s.name === "garivini.insert")!
        assert.isDefined(insert, otlp.spans.map((s) => `${s.service}/${s.name}`).join(", "))
        assert.strictEqual(insert.service, "garivini-inject")
        const { "garivini.dbid": dbid, "garivini.jobid": jobid } = insert.attributes
        assert.deepStrictEqual(insert.attributes, {
          "garivini.funcname": "traced_fn",
          "garivini.dbid": dbid!,
          "garivini.jobid": jobid!
        })
        const ofJob = (name: string) =>
          otlp.spans.filter((s) => s.name === name && s.attributes["garivini.jobid"] === jobid)
        const [dispatch] = ofJob("garivini.dispatch")
        const [run] = ofJob("garivini.run")
        assert.isDefined(dispatch)
        assert.isDefined(run)
        assert.strictEqual(dispatch!.service, "garivini-queue-runner")
        assert.strictEqual(run!.service, "garivini-consume")
        assert.strictEqual(dispatch!.traceId, insert.traceId)
        assert.strictEqual(run!.traceId, insert.traceId)
        assert.strictEqual(dispatch!.parentSpanId, insert.spanId)
        assert.strictEqual(run!.parentSpanId, dispatch!.spanId)
      }),
    120_000
  )

  it.scopedLive("tracing off: the worker JSON carries no traceparent", () =>
    Effect.gen(function*() {
      const server = yield* gearmandServer
      const db = `sqlite:${path.join(yield* tempDir("garivini-otlp-off-"), "garivini.db")}`
      const payloads: Array<string> = []
      const gearman = yield* live([server])
      yield* gearman.serve({ plain_fn: (job) => Effect.sync(() => void payloads.push(job.text())) })
      const stored = yield* gariviniWithEnv({}, "inject", "--db", db, "--count", "2", "--function", "plain_fn")
      assert.strictEqual(stored.code, 0, stored.stderr)
      const runner = yield* backgroundWithEnv({}, "queue-runner", "--db", db, "--gearmand", server)
      yield* eventually(Effect.sync(() => payloads.length >= 2), "both jobs at the worker")
      yield* runner.stop("SIGTERM")
      for (const payload of payloads) {
        const json: unknown = JSON.parse(payload)
        assert.isObject(json)
        assert.notProperty(json, "traceparent")
        assert.property(json, "lease")
      }
    }), 120_000)
})
