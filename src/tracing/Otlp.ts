/**
 * Spans exported over OTLP/HTTP (JSON) by `@effect/opentelemetry`'s OtlpTracer, configured by the
 * standard variables (docs/operations.md, "Traces"), with the standard samplers in front of it.
 */
import { randomBytes } from "node:crypto"
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type { Context } from "effect"
import { Data, Duration, Effect, Either, Layer, Option, Tracer } from "effect"
import type { Exit } from "effect"
import { layerEnabled } from "./Tracing.js"

/** A tracing variable that cannot be used. */
export class TracingConfigInvalid extends Data.TaggedError("TracingConfigInvalid")<{
  readonly variable: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.variable}: ${this.reason}`
  }
}

export type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio"

const SAMPLERS: ReadonlyArray<SamplerName> = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio"
]

/** OTEL_TRACES_SAMPLER with OTEL_TRACES_SAMPLER_ARG (the ratio of the `*traceidratio` ones). */
export interface SamplerSettings {
  readonly name: SamplerName
  readonly ratio: number
}

export interface OtlpSettings {
  /** Where spans are POSTed (OTLP/HTTP JSON): the traces endpoint, or `<endpoint>/v1/traces`. */
  readonly url: string
  readonly serviceName: string
  readonly sampler: SamplerSettings
  readonly headers: Readonly<Record<string, string>>
  /** OTEL_BSP_SCHEDULE_DELAY: how often batched spans are sent (default 5 s). */
  readonly exportInterval: Duration.Duration
}

/**
 * The settings the standard variables give; none when no endpoint is set (tracing off). The
 * default service name is `garivini-<role>`.
 */
export const settingsFromEnv = (
  env: Readonly<Record<string, string | undefined>>,
  role: string
): Either.Either<Option.Option<OtlpSettings>, TracingConfigInvalid> => {
  const set = (name: string) => {
    const v = env[name]?.trim()
    return v === undefined || v === "" ? undefined : v
  }
  const traces = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  const base = set("OTEL_EXPORTER_OTLP_ENDPOINT")
  if (traces === undefined && base === undefined) return Either.right(Option.none())
  // The per-signal variable is the URL as is; the general one gets the signal's path.
  const url = traces ?? `${base!.replace(/\/+$/, "")}/v1/traces`
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    return Either.left(
      new TracingConfigInvalid({
        variable: traces === undefined ? "OTEL_EXPORTER_OTLP_ENDPOINT" : "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        reason: `${JSON.stringify(url)} is not an http(s) URL`
      })
    )
  }
  const samplerName = set("OTEL_TRACES_SAMPLER") ?? "parentbased_always_on"
  if (!SAMPLERS.some((s) => s === samplerName)) {
    return Either.left(
      new TracingConfigInvalid({
        variable: "OTEL_TRACES_SAMPLER",
        reason: `${JSON.stringify(samplerName)} is not one of ${SAMPLERS.join(", ")}`
      })
    )
  }
  const ratioText = set("OTEL_TRACES_SAMPLER_ARG")
  const ratio = ratioText === undefined ? 1 : Number(ratioText)
  if (!(ratio >= 0 && ratio <= 1)) {
    return Either.left(
      new TracingConfigInvalid({ variable: "OTEL_TRACES_SAMPLER_ARG", reason: `${ratioText} is not a ratio in [0, 1]` })
    )
  }
  const delayText = set("OTEL_BSP_SCHEDULE_DELAY")
  const delay = delayText === undefined ? 5000 : Number(delayText)
  if (!Number.isSafeInteger(delay) || delay < 1) {
    return Either.left(
      new TracingConfigInvalid({
        variable: "OTEL_BSP_SCHEDULE_DELAY",
        reason: `${delayText} is not a positive number of milliseconds`
      })
    )
  }
  const headers = parseHeaders(set("OTEL_EXPORTER_OTLP_TRACES_HEADERS") ?? set("OTEL_EXPORTER_OTLP_HEADERS"))
  return Either.right(Option.some({
    url,
    serviceName: set("OTEL_SERVICE_NAME") ?? `garivini-${role}`,
    // The only sampler names are those above, checked.
    sampler: { name: samplerName as SamplerName, ratio },
    headers,
    exportInterval: Duration.millis(delay)
  }))
}

/** `key=value,key2=value2`, values URL-encoded (the OTLP exporter's header format). */
const parseHeaders = (text: string | undefined): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const pair of text?.split(",") ?? []) {
    const at = pair.indexOf("=")
    if (at <= 0) continue
    out[pair.slice(0, at).trim()] = decodeURIComponent(pair.slice(at + 1).trim())
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Sampling: OtlpTracer exports every span it makes, so the sampler sits in front of it.

const randomId = (bytes: number): string => randomBytes(bytes).toString("hex")

/**
 * Whether `traceidratio` records a trace: a function of its trace id (the XOR of its 32-bit parts
 * against ratio × 2³², as OpenTelemetry JS computes it), so every process holding a span of the
 * trace makes the same decision at the same ratio.
 */
export const traceIdSampled = (traceId: string, ratio: number): boolean => {
  if (ratio >= 1) return true
  let accumulated = 0
  for (let at = 0; at < traceId.length; at += 8) {
    accumulated = (accumulated ^ Number.parseInt(traceId.slice(at, at + 8), 16)) >>> 0
  }
  return accumulated < Math.floor(ratio * 0xffffffff)
}

/**
 * Whether a new span of trace `traceId` is recorded: a parent-based sampler follows the parent's
 * decision; `traceidratio` is keyed on the trace id.
 */
export const sampleDecision = (
  sampler: SamplerSettings,
  parent: Option.Option<Tracer.AnySpan>,
  traceId: string
): boolean => {
  const parentBased = sampler.name.startsWith("parentbased_")
  if (parentBased && Option.isSome(parent)) return parent.value.sampled
  const root = parentBased ? sampler.name.slice("parentbased_".length) : sampler.name
  return root === "always_on" ? true : root === "always_off" ? false : traceIdSampled(traceId, sampler.ratio)
}

/** A span not recorded: ids and context for its children and the traceparent, nothing exported. */
class UnsampledSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly sampled = false
  readonly spanId: string = randomId(8)
  status: Tracer.SpanStatus
  readonly attributes = new Map<string, unknown>()
  readonly links: Array<Tracer.SpanLink>
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly traceId: string,
    readonly context: Context.Context<never>,
    links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind
  ) {
    this.status = { _tag: "Started", startTime }
    this.links = [...links]
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(): void {}
  event(): void {}
  addLinks(): void {}
}

/**
 * `inner` behind `sampler`: unsampled spans are never exported. A root span's trace id is the one
 * `inner` draws, so a root is made by `inner` first and dropped (never ended, so never exported)
 * when its trace is not sampled.
 */
export const sampled = (inner: Tracer.Tracer, sampler: SamplerSettings): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      if (Option.isSome(parent)) {
        const traceId = parent.value.traceId
        return sampleDecision(sampler, parent, traceId)
          ? inner.span(name, parent, context, links, startTime, kind, options)
          : new UnsampledSpan(name, parent, traceId, context, links, startTime, kind)
      }
      const span = inner.span(name, parent, context, links, startTime, kind, options)
      return sampleDecision(sampler, parent, span.traceId)
        ? span
        : new UnsampledSpan(name, parent, span.traceId, context, links, startTime, kind)
    },
    context: (f, fiber) => inner.context(f, fiber)
  })

// ---------------------------------------------------------------------------------------------
// Layers.

/**
 * Spans exported over OTLP/HTTP JSON, and the job spans on, for the layer's life. Closing it
 * sends the spans still batched (at most 3 s).
 */
export const layerOtlp = (settings: OtlpSettings): Layer.Layer<never> =>
  Layer.unwrapScoped(
    Effect.map(
      OtlpTracer.make({
        url: settings.url,
        resource: { serviceName: settings.serviceName },
        headers: settings.headers,
        exportInterval: settings.exportInterval
      }),
      (tracer) => Layer.merge(Layer.setTracer(sampled(tracer, settings.sampler)), layerEnabled)
    )
  ).pipe(Layer.provide(Layer.merge(FetchHttpClient.layer, OtlpSerialization.layerJson)))

/** `layerOtlp` when the variables set an endpoint; nothing otherwise. */
export const layerFromEnv = (
  role: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): Layer.Layer<never, TracingConfigInvalid> =>
  Either.match(settingsFromEnv(env, role), {
    onLeft: (e) => Layer.fail(e),
    onRight: Option.match({ onNone: () => Layer.empty, onSome: layerOtlp })
  })

/** Whether the variables turn tracing on (the loggers add trace ids then). */
export const configuredInEnv = (env: Readonly<Record<string, string | undefined>> = process.env): boolean =>
  Either.match(settingsFromEnv(env, ""), { onLeft: () => false, onRight: Option.isSome })
