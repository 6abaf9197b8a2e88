// Traces without a collector: the traceparent's rules, the OTLP settings from the variables, the
// samplers, and the job spans on the memory layers under a recording tracer.
import { assert, describe, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import { Context, Deferred, Effect, Either, Exit, Layer, Option, Tracer } from "effect"
import type { Console } from "effect"
import { loggerLayer } from "../../src/cli/logging.js"
import * as Gearman from "../../src/gearman/Gearman.js"
import { decodeWorkerJson, decodeWorkerJsonWithSchema, encodeWorkerJson, fastWorkerJob } from "../../src/Job.js"
import type { StoredJob } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import * as Controller from "../../src/roles/Controller.js"
import * as Injector from "../../src/roles/Injector.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import type { SamplerSettings } from "../../src/tracing/Otlp.js"
import { sampled, sampleDecision, settingsFromEnv, traceIdSampled } from "../../src/tracing/Otlp.js"
import { formatTraceparent, parseTraceparent, traceparentProblem } from "../../src/tracing/traceparent.js"
import * as Tracing from "../../src/tracing/Tracing.js"
import { atT0 } from "../support/clock.js"

const TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

describe("traceparent", () => {
  it("accepts version 00 in lowercase hex; refuses other shapes and all-zero ids", () => {
    assert.isUndefined(traceparentProblem(TP))
    assert.isUndefined(traceparentProblem("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"))
    for (
      const bad of [
        TP.toUpperCase(),
        `${TP} `,
        TP.replace(/^00/, "01"),
        TP.slice(0, -1),
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "",
        42,
        null
      ]
    ) assert.isDefined(traceparentProblem(bad), JSON.stringify(bad))
  })

  it("parses to ids and the sampled flag, and formats back", () => {
    assert.deepStrictEqual(parseTraceparent(TP), {
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      sampled: true
    })
    assert.isFalse(parseTraceparent(TP.replace(/-01$/, "-02"))!.sampled)
    assert.isUndefined(parseTraceparent("nope"))
    assert.strictEqual(formatTraceparent(parseTraceparent(TP)!), TP)
  })
})

describe("the worker JSON's traceparent", () => {
  const job: StoredJob = {
    dbid: 1,
    jobid: 7,
    funcname: "f",
    arg: new Uint8Array([104, 105]),
    uniqkey: null,
    coalesce: null,
    runAfter: 100,
    flag: "shim",
    failcount: 0,
    traceparent: TP
  }

  it("round-trips through both decoders; absent stays absent", () => {
    const text = encodeWorkerJson(job)
    assert.strictEqual(JSON.parse(text).traceparent, TP)
    assert.deepStrictEqual(fastWorkerJob(text), job)
    assert.deepStrictEqual(Either.getOrThrow(decodeWorkerJsonWithSchema(text)), job)
    const { traceparent: _, ...plain } = job
    assert.notProperty(JSON.parse(encodeWorkerJson(plain)), "traceparent")
    assert.deepStrictEqual(Either.getOrThrow(decodeWorkerJson(encodeWorkerJson(plain))), plain)
  })

  it("a malformed traceparent makes the payload a typed rejection; null is none", () => {
    const bad = JSON.stringify({ ...JSON.parse(encodeWorkerJson(job)), traceparent: "00-xyz" })
    assert.isUndefined(fastWorkerJob(bad))
    const rejected = decodeWorkerJson(bad)
    assert.isTrue(Either.isLeft(rejected) && rejected.left._tag === "InvalidJob")
    const none = JSON.stringify({ ...JSON.parse(encodeWorkerJson(job)), traceparent: null })
    assert.notProperty(Either.getOrThrow(decodeWorkerJson(none)), "traceparent")
  })
})

describe("OTLP settings from the standard variables", () => {
  it("off without an endpoint; the traces endpoint as is, the general one with /v1/traces", () => {
    assert.isTrue(Option.isNone(Either.getOrThrow(settingsFromEnv({}, "queue-runner"))))
    const general = Option.getOrThrow(
      Either.getOrThrow(settingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318/" }, "queue-runner"))
    )
    assert.strictEqual(general.url, "http://127.0.0.1:4318/v1/traces")
    assert.strictEqual(general.serviceName, "garivini-queue-runner")
    assert.deepStrictEqual(general.sampler, { name: "parentbased_always_on", ratio: 1 })
    const own = Option.getOrThrow(Either.getOrThrow(settingsFromEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://ignored:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://collector/x",
      OTEL_SERVICE_NAME: "mine",
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0.25",
      OTEL_EXPORTER_OTLP_HEADERS: "a=1,b=x%20y"
    }, "run")))
    assert.strictEqual(own.url, "https://collector/x")
    assert.strictEqual(own.serviceName, "mine")
    assert.deepStrictEqual(own.sampler, { name: "parentbased_traceidratio", ratio: 0.25 })
    assert.deepStrictEqual(own.headers, { a: "1", b: "x y" })
  })

  it("refuses a bad endpoint, sampler or ratio, naming the variable", () => {
    const variable = (env: Record<string, string>) => {
      const r = settingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", ...env }, "x")
      return Either.isLeft(r) ? r.left.variable : "accepted"
    }
    assert.strictEqual(variable({ OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://h" }), "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert.strictEqual(variable({ OTEL_TRACES_SAMPLER: "sometimes" }), "OTEL_TRACES_SAMPLER")
    assert.strictEqual(variable({ OTEL_TRACES_SAMPLER_ARG: "2" }), "OTEL_TRACES_SAMPLER_ARG")
    assert.strictEqual(variable({ OTEL_BSP_SCHEDULE_DELAY: "soon" }), "OTEL_BSP_SCHEDULE_DELAY")
  })

  it("samplers: parent-based ones follow the parent, the others decide alone", () => {
    const sampledParent = Option.some(Tracer.externalSpan({ traceId: "a".repeat(32), spanId: "b".repeat(16) }))
    const unsampledParent = Option.some(
      Tracer.externalSpan({ traceId: "a".repeat(32), spanId: "b".repeat(16), sampled: false })
    )
    const low = "0".repeat(32) // accumulates to 0: sampled at any ratio above 0
    const high = "ffffffff" + "0".repeat(24) // accumulates to 2³² - 1: sampled only at ratio 1
    const decide = (name: SamplerSettings["name"], parent: typeof sampledParent, traceId: string) =>
      sampleDecision({ name, ratio: 0.3 }, parent, traceId)
    assert.isTrue(decide("parentbased_always_on", Option.none(), high))
    assert.isFalse(decide("parentbased_always_on", unsampledParent, low))
    assert.isTrue(decide("parentbased_always_off", sampledParent, high))
    assert.isFalse(decide("parentbased_always_off", Option.none(), low))
    assert.isFalse(decide("parentbased_traceidratio", Option.none(), high))
    assert.isTrue(decide("parentbased_traceidratio", Option.none(), low))
    assert.isTrue(decide("parentbased_traceidratio", sampledParent, high))
    assert.isTrue(decide("always_on", unsampledParent, high))
    assert.isFalse(decide("always_off", sampledParent, low))
    // traceidratio ignores the parent's flag and keys on the trace id
    assert.isTrue(decide("traceidratio", unsampledParent, low))
    assert.isFalse(decide("traceidratio", sampledParent, high))
  })

  it("traceidratio: one decision per trace id, in every process, at the configured ratio", () => {
    const sampler: SamplerSettings = { name: "traceidratio", ratio: 0.3 }
    const exported: Array<string> = []
    const inner = Tracer.make({
      span: (name, parent, context, links, startTime, kind) => {
        const traceId = Option.isSome(parent) ? parent.value.traceId : randomBytes(16).toString("hex")
        const span: Tracer.Span = {
          _tag: "Span",
          name,
          spanId: randomBytes(8).toString("hex"),
          traceId,
          parent,
          context,
          status: { _tag: "Started", startTime },
          attributes: new Map<string, unknown>(),
          links,
          sampled: true,
          kind,
          end: () => void exported.push(traceId),
          attribute: () => {},
          event: () => {},
          addLinks: () => {}
        }
        return span
      },
      context: (f) => f()
    })
    const tracer = sampled(inner, sampler)
    const make = (parent: Option.Option<Tracer.AnySpan>) =>
      tracer.span("s", parent, Context.empty(), [], 0n, "internal", {})
    let rootsSampled = 0
    const roots = 4000
    for (let i = 0; i < roots; i++) {
      const root = make(Option.none())
      assert.strictEqual(root.sampled, traceIdSampled(root.traceId, 0.3))
      // the same trace continued in another process (a remote parent) makes the same decision
      const remote = make(Option.some(Tracer.externalSpan({ traceId: root.traceId, spanId: root.spanId })))
      assert.strictEqual(remote.sampled, root.sampled)
      assert.strictEqual(remote.traceId, root.traceId)
      root.end(1n, Exit.void)
      remote.end(1n, Exit.void)
      if (root.sampled) rootsSampled++
    }
    assert.isAbove(rootsSampled / roots, 0.25)
    assert.isBelow(rootsSampled / roots, 0.35)
    // only the sampled ones reached the exporter, two spans each
    assert.strictEqual(exported.length, rootsSampled * 2)
    assert.isTrue(exported.every((traceId) => traceIdSampled(traceId, 0.3)))
  })
})

/** Spans made under it, ended or not. */
const recordingTracer = () => {
  const spans: Array<Tracer.Span> = []
  let n = 0
  const hex = (width: number) => (++n).toString(16).padStart(width, "0")
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const attributes = new Map<string, unknown>()
      const span: Tracer.Span = {
        _tag: "Span",
        name,
        spanId: hex(16),
        traceId: Option.isSome(parent) ? parent.value.traceId : hex(32),
        parent,
        context: context as Context.Context<never>,
        status: { _tag: "Started", startTime },
        attributes,
        links,
        sampled: true,
        kind,
        end(endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
          ;(span as { status: Tracer.SpanStatus }).status = { _tag: "Ended", startTime, endTime, exit }
        },
        attribute: (key, value) => void attributes.set(key, value),
        event: () => {},
        addLinks: () => {}
      }
      spans.push(span)
      return span
    },
    context: (f) => f()
  })
  return { spans, tracer }
}

const memoryLayers = Layer.mergeAll(
  StorageLayers.layerMemory({ shards: [1] }),
  Gearman.layerMemory({ servers: Gearman.makeMemoryServers() })
)

describe("job spans on the memory layers", () => {
  it.scoped("tracing on: the insert span is a child of the caller's span, and the job stores its context", () => {
    const { spans, tracer } = recordingTracer()
    return Effect.gen(function*() {
      const storage = yield* Storage
      const outcome = yield* Client.insertJob({ funcname: "traced", arg: "x" }).pipe(Effect.withSpan("caller"))
      const caller = spans.find((s) => s.name === "caller")!
      const insert = spans.find((s) => s.name === "garivini.insert")!
      assert.strictEqual(insert.traceId, caller.traceId)
      assert.strictEqual(Option.getOrThrow(insert.parent).spanId, caller.spanId)
      assert.strictEqual(insert.status._tag, "Ended")
      assert.deepStrictEqual(Object.fromEntries(insert.attributes), {
        "garivini.funcname": "traced",
        "garivini.dbid": outcome.handle.dbid,
        "garivini.jobid": outcome.handle.jobid
      })
      const [claimed] = yield* storage.claimDue(1, 10, "30 seconds")
      assert.strictEqual(claimed!.traceparent, formatTraceparent(insert))
      // Given explicitly: the insert span continues that trace.
      yield* Client.insertJob({ funcname: "traced", traceparent: TP })
      const continued = spans.filter((s) => s.name === "garivini.insert")[1]!
      assert.strictEqual(continued.traceId, parseTraceparent(TP)!.traceId)
    }).pipe(
      Effect.provide(memoryLayers),
      Effect.provide(Layer.merge(Layer.setTracer(tracer), Tracing.layerEnabled)),
      atT0
    )
  })

  it.scoped("tracing on, in one process: insert → dispatch (QueueRunner) → run (worker helper), each the child of the last", () => {
    const { spans, tracer } = recordingTracer()
    return Effect.gen(function*() {
      const ran = yield* Deferred.make<string | undefined>()
      yield* Worker.serve({ tfn: (job) => Effect.asVoid(Deferred.succeed(ran, job.traceparent)) })
      const { handle } = yield* Client.insertJob({ funcname: "tfn" })
      const runner = yield* QueueRunner.make({ queueWatermarkDepth: 0 })
      yield* runner.round
      const carried = yield* Deferred.await(ran)
      const run = yield* Effect.repeat(
        Effect.sync(() => spans.find((s) => s.name === "garivini.run" && s.status._tag === "Ended")),
        { until: (s) => s !== undefined }
      )
      const [insert, dispatch] = ["garivini.insert", "garivini.dispatch"].map((n) => spans.find((s) => s.name === n)!)
      assert.strictEqual(Option.getOrThrow(dispatch!.parent).spanId, insert!.spanId)
      assert.strictEqual(Option.getOrThrow(run!.parent).spanId, dispatch!.spanId)
      assert.isTrue([dispatch!, run!].every((s) => s.traceId === insert!.traceId))
      // The handler sees the dispatch span's context, as the worker JSON carried it.
      assert.strictEqual(carried, formatTraceparent(dispatch!))
      assert.strictEqual(dispatch!.status._tag, "Ended")
      assert.strictEqual(run!.attributes.get("garivini.jobid"), handle.jobid)
    }).pipe(
      Effect.provide(memoryLayers),
      Effect.provide(Layer.merge(Layer.setTracer(tracer), Tracing.layerEnabled)),
      atT0
    )
  })

  it.scoped("low latency, traced: inject_jobs' traceparent → inject → insert and dispatch (Injector) → run (Controller) → run (worker)", () => {
    const { spans, tracer } = recordingTracer()
    return Effect.gen(function*() {
      const ran = yield* Deferred.make<string | undefined>()
      yield* Injector.serve()
      yield* Controller.serve()
      yield* Worker.serve({ llfn: (job) => Effect.asVoid(Deferred.succeed(ran, job.traceparent)) })
      const gearman = yield* Gearman.Gearman
      yield* gearman.submit(Injector.INJECT_FUNCTION, JSON.stringify({ funcname: "llfn", traceparent: TP }))
      const carried = yield* Deferred.await(ran)
      const ended = (name: string) =>
        Effect.repeat(
          Effect.sync(() => spans.filter((s) => s.name === name && s.status._tag === "Ended")),
          { until: (found) => found.length > 0 }
        )
      const [insert] = yield* ended("garivini.insert")
      const [dispatch] = yield* ended("garivini.dispatch")
      const runs = yield* ended("garivini.run")
      // The client's trace goes on: the insert and the dispatch continue its traceparent.
      const client = parseTraceparent(TP)!
      assert.strictEqual(Option.getOrThrow(insert!.parent).spanId, client.spanId)
      assert.strictEqual(Option.getOrThrow(dispatch!.parent).spanId, client.spanId)
      assert.isTrue([insert!, dispatch!, ...runs].every((s) => s.traceId === client.traceId))
      // The Controller's run and the worker's both continue the dispatch (the payload goes on as it came).
      assert.strictEqual(carried, formatTraceparent(dispatch!))
      yield* Effect.repeat(
        Effect.sync(() => spans.filter((s) => s.name === "garivini.run" && s.status._tag === "Ended").length),
        { until: (n) => n >= 2 }
      )
      const allRuns = spans.filter((s) => s.name === "garivini.run")
      assert.strictEqual(allRuns.length, 2)
      assert.isTrue(allRuns.every((s) => Option.getOrThrow(s.parent).spanId === dispatch!.spanId))
    }).pipe(
      Effect.provide(memoryLayers),
      Effect.provide(Layer.merge(Layer.setTracer(tracer), Tracing.layerEnabled)),
      atT0
    )
  })

  it.scoped("tracing off: no insert span, no traceparent stored, none in the worker JSON", () => {
    const { spans, tracer } = recordingTracer()
    return Effect.gen(function*() {
      const storage = yield* Storage
      yield* Client.insertJob({ funcname: "plain", arg: "x" }).pipe(Effect.withSpan("caller"))
      assert.isFalse(spans.some((s) => s.name.startsWith("garivini.")), spans.map((s) => s.name).join(", "))
      const [claimed] = yield* storage.claimDue(1, 10, "30 seconds")
      assert.notProperty(JSON.parse(encodeWorkerJson(claimed!)), "traceparent")
    }).pipe(Effect.provide(memoryLayers), Effect.provide(Layer.setTracer(tracer)), atT0)
  })

  it.scoped("inject_jobs takes a \"traceparent\" and stores it; a malformed one rejects the request, naming it", () =>
    Effect.gen(function*() {
      const storage = yield* Storage
      // Paused: stored due, so the claim shows what was stored.
      yield* Client.pauseFunction("injected")
      const handle = yield* Injector.makeHandler({ queueWatermarkDepth: 0 })
      const send = (body: unknown) => handle(new TextEncoder().encode(JSON.stringify(body)))
      yield* send([{ funcname: "injected", arg: "a", traceparent: TP }, { funcname: "injected", arg: "b" }])
      for (const bad of ["00-nope", TP.toUpperCase(), 5, "00-00000000000000000000000000000000-b7ad6b7169203331-01"]) {
        const rejected = yield* Effect.flip(send({ funcname: "injected", arg: "x", traceparent: bad }))
        assert.include(Buffer.from(rejected.data).toString(), "traceparent", JSON.stringify(bad))
      }
      const claimed = yield* storage.claimDue(1, 10, "60 seconds")
      assert.deepStrictEqual(claimed.map((j) => [Buffer.from(j.arg).toString(), j.traceparent]), [
        ["a", TP],
        ["b", undefined]
      ])
    }).pipe(Effect.provide(memoryLayers), atT0))
})

describe("logs with tracing on", () => {
  /** What the logger writes to stderr for one line logged inside a span. */
  const logged = (format: "json" | "logfmt", traced: boolean) =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const base = yield* Effect.console
      const console: Console.Console = {
        ...base,
        unsafe: { ...base.unsafe, error: (...args) => void lines.push(args.map(String).join(" ")) }
      }
      yield* Effect.log("inside").pipe(
        Effect.withSpan("work"),
        Effect.provide(loggerLayer(format, traced)),
        Effect.withConsole(console)
      )
      return lines
    })

  it.effect("json and logfmt lines carry the trace and span ids; without tracing they do not", () =>
    Effect.gen(function*() {
      const [json] = yield* logged("json", true)
      const fields = JSON.parse(json!)
      assert.match(fields.annotations["effect.traceId"], /^[0-9a-f]+$/)
      assert.match(fields.annotations["effect.spanId"], /^[0-9a-f]+$/)
      const [logfmt] = yield* logged("logfmt", true)
      assert.match(logfmt!, /effect\.traceId=[0-9a-f]+/)
      assert.match(logfmt!, /effect\.spanId=[0-9a-f]+/)
      const [plain] = yield* logged("json", false)
      assert.notInclude(plain!, "effect.traceId")
    }))
})
