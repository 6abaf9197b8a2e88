/**
 * Traces (docs/operations.md, "Traces"): one trace per job, insert → dispatch → run, across
 * processes. This module is what the roles need (light: no exporter); Otlp.ts exports the
 * spans when the standard `OTEL_EXPORTER_OTLP_*` variables are set.
 *
 * Whether tracing is on is decided once, where a role is made (`enabled`, a FiberRef the tracing
 * layer sets): when it is off, the roles do no per-job tracing work at all (no span, no
 * traceparent). An app with its own tracer turns the job spans on with `layerEnabled`.
 */
import type { Tracer } from "effect"
import { Cause, Clock, Effect, Exit, FiberRef, Layer } from "effect"
import type { InsertOutcome, NewJob, StoredJob, StoredJobId } from "../Job.js"
import { externalParent, formatTraceparent } from "./traceparent.js"

/** True where the job spans are on: set by `layerOtlp` / `layerEnabled` for the layer's life. */
export const enabled: FiberRef.FiberRef<boolean> = FiberRef.unsafeMake(false)

/** Whether the job spans are on (read once, where a role is made). */
export const isEnabled: Effect.Effect<boolean> = FiberRef.get(enabled)

/** Turns the job spans on under a tracer the app installs itself (e.g. `NodeSdk.layer`). */
export const layerEnabled: Layer.Layer<never> = Layer.locallyScoped(enabled, true)

// ---------------------------------------------------------------------------------------------
// The job spans. Attributes: function, shard and row, never the arg.

/** A job's attributes on its spans. */
export const jobAttributes = (job: { readonly funcname: string } & Partial<StoredJobId>): Record<string, unknown> =>
  job.dbid === undefined || job.jobid === undefined
    ? { "garivini.funcname": job.funcname }
    : { "garivini.funcname": job.funcname, "garivini.dbid": job.dbid, "garivini.jobid": job.jobid }

/** The options of a span continuing the job's stored trace (a new trace when it has none). */
export const continuing = (
  job: { readonly traceparent?: string | undefined; readonly funcname: string } & Partial<StoredJobId>,
  kind: Tracer.SpanKind
): Tracer.SpanOptions => {
  const parent = externalParent(job.traceparent)
  return parent === undefined
    ? { root: true, kind, attributes: jobAttributes(job) }
    : { parent, kind, attributes: jobAttributes(job) }
}

/** Spans started for a batch of jobs, each job carrying its span's traceparent. */
export interface JobSpans<J> {
  readonly jobs: ReadonlyArray<J>
  /** Ends the spans: job `i` failed when `failure(i)` says why. */
  readonly end: (failure: (i: number) => unknown) => Effect.Effect<void>
}

/**
 * A span per stored job (dispatch), child of its stored traceparent; the jobs returned carry the
 * span's traceparent instead, for the worker JSON.
 */
export const jobSpans = (
  name: string,
  jobs: ReadonlyArray<StoredJob>,
  kind: Tracer.SpanKind = "producer"
): Effect.Effect<JobSpans<StoredJob>> =>
  Effect.map(
    Effect.forEach(jobs, (job) => Effect.makeSpan(name, continuing(job, kind))),
    (spans) => ({
      jobs: jobs.map((job, i) => ({ ...job, traceparent: formatTraceparent(spans[i]!) })),
      end: (failure) => endSpans(spans, failure)
    })
  )

/** Ends spans at one time, each with its outcome. */
export const endSpans = (
  spans: ReadonlyArray<Tracer.Span>,
  failure: (i: number) => unknown
): Effect.Effect<void> =>
  Effect.map(Clock.currentTimeNanos, (now) => {
    spans.forEach((span, i) => {
      const why = failure(i)
      span.end(now, why === undefined ? Exit.void : Exit.fail(why))
    })
  })

/**
 * `insert` with a span per job (`garivini.insert`, a child of the job's given traceparent, else
 * of the caller's current span); each job is stored with its span's traceparent, and the span
 * gets the job's shard and row once stored.
 */
export const tracedInsert = <E>(
  jobs: ReadonlyArray<NewJob>,
  insert: (jobs: ReadonlyArray<NewJob>) => Effect.Effect<ReadonlyArray<InsertOutcome>, E>
): Effect.Effect<ReadonlyArray<InsertOutcome>, E> =>
  Effect.flatMap(
    Effect.forEach(jobs, (job) => {
      const parent = externalParent(job.traceparent)
      const attributes = jobAttributes(job)
      return Effect.makeSpan(
        "garivini.insert",
        parent === undefined ? { kind: "producer", attributes } : { parent, kind: "producer", attributes }
      )
    }),
    (spans) =>
      insert(jobs.map((job, i) => ({ ...job, traceparent: formatTraceparent(spans[i]!) }))).pipe(
        Effect.tap((outcomes) =>
          outcomes.forEach((o, i) => {
            spans[i]!.attribute("garivini.dbid", o.handle.dbid)
            spans[i]!.attribute("garivini.jobid", o.handle.jobid)
            if (o.duplicate) spans[i]!.attribute("garivini.duplicate", true)
          })
        ),
        Effect.onExit((exit) =>
          Exit.isSuccess(exit) ? endSpans(spans, () => undefined) : endSpans(spans, () => Cause.squash(exit.cause))
        )
      )
  )
