/**
 * The W3C `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header), version 00:
 * `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`. What a job stores (migration 7) and the
 * worker JSON carries, so that one trace follows a job across processes. Pure: no tracer needed.
 */
import { Tracer } from "effect"

/** Version 00, lowercase hex, as the W3C text writes it. */
export const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/

/** Its length: the column is `VARCHAR(55)`. */
export const TRACEPARENT_CHARS = 55

const ZERO_TRACE = "0".repeat(32)
const ZERO_SPAN = "0".repeat(16)

/** Why `text` is not a usable traceparent, or undefined if it is (the W3C forbids all-zero ids). */
export const traceparentProblem = (text: unknown): string | undefined => {
  if (typeof text !== "string" || !TRACEPARENT.test(text))
    return "traceparent is not 00-<32 hex>-<16 hex>-<2 hex> (W3C trace context, lowercase)"
  if (text.slice(3, 35) === ZERO_TRACE) return "traceparent has an all-zero trace id"
  if (text.slice(36, 52) === ZERO_SPAN) return "traceparent has an all-zero parent id"
  return undefined
}

export const isTraceparent = (text: unknown): text is string => traceparentProblem(text) === undefined

/** The ids of a traceparent (unchecked: call on a valid one). */
export interface TraceContext {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

/** Parses a valid traceparent; undefined for anything else. */
export const parseTraceparent = (text: string): TraceContext | undefined =>
  isTraceparent(text)
    ? {
      traceId: text.slice(3, 35),
      spanId: text.slice(36, 52),
      // Bit 0 of the flags: the caller sampled it.
      sampled: (parseInt(text.slice(53, 55), 16) & 1) === 1
    }
    : undefined

/** The traceparent naming `span` as the parent (flags 01 when sampled, else 00). */
export const formatTraceparent = (
  span: { readonly traceId: string; readonly spanId: string; readonly sampled: boolean }
) => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/** A stored traceparent as an Effect parent span (for a span continuing the job's trace). */
export const externalParent = (text: string | undefined): Tracer.ExternalSpan | undefined => {
  const ctx = text === undefined ? undefined : parseTraceparent(text)
  return ctx === undefined ? undefined : Tracer.externalSpan(ctx)
}
