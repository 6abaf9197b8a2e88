/**
 * Prometheus exposition of every Effect `Metric` of the process: `@effect/opentelemetry` bridges
 * Effect's metric registry to an OpenTelemetry MetricReader (the Prometheus exporter), which
 * reads it at scrape time only; hot paths keep their synchronous `unsafeUpdate`s. The HTTP server
 * is ours, scoped, so a port in use fails the start with `MetricsListenFailed` and the socket is
 * closed with the scope.
 */
import { createServer } from "node:http"
import type { Server } from "node:http"
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { Data, Effect, Layer } from "effect"
import { formatHostPort, type HostPort } from "../hostPort.js"
import { jobsDead, jobsFailed } from "../roles/metrics.js"
import { jobsClaimed, jobsCompleted, jobsInserted, jobsRetried } from "../storage/metrics.js"
import { processGauges } from "./process.js"

const UNLABELLED_COUNTERS = [jobsInserted, jobsCompleted, jobsClaimed, jobsRetried, jobsFailed, jobsDead]

/** The metrics address could not be listened on (in use, not local, no permission). */
export class MetricsListenFailed extends Data.TaggedError("MetricsListenFailed")<{
  readonly address: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `cannot listen on ${this.address} for metrics: ${this.reason}`
  }
}

export interface PrometheusOptions extends HostPort {
  /** The `service.name` of the OpenTelemetry resource (default "garivini"). */
  readonly serviceName?: string | undefined
}

const PATH = "/metrics"

const listen = (server: Server, address: HostPort) =>
  Effect.async<void, MetricsListenFailed>((resume) => {
    const onError = (e: NodeJS.ErrnoException) =>
      resume(
        Effect.fail(
          new MetricsListenFailed({ address: formatHostPort(address), reason: e.code ?? e.message, cause: e })
        )
      )
    server.once("error", onError)
    server.listen(address.port, address.host, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

/** The bound address (the port when 0 was asked for). */
export class MetricsAddress extends Data.Class<HostPort> {}

/**
 * Serves `/metrics` for the life of the scope; returns the address bound. The process gauges
 * (memory, event loop delay, uptime) are refreshed at each scrape, before the registry is read.
 */
export const serve = (options: PrometheusOptions) =>
  Effect.gen(function*() {
    const exporter = new PrometheusExporter({ preventServerStart: true })
    yield* Layer.buildWithScope(
      OtelMetrics.layer(() => exporter).pipe(
        Layer.provide(OtelResource.layer({ serviceName: options.serviceName ?? "garivini" }))
      ),
      yield* Effect.scope
    )
    const refresh = yield* processGauges
    // Counters without labels start at 0, so rate() and increase() see their first jobs.
    for (const counter of UNLABELLED_COUNTERS) counter.unsafeUpdate(0, [])
    const server = createServer((request, response) => {
      if (request.method === "GET" && (request.url ?? "").split("?")[0] === PATH) {
        refresh()
        exporter.getMetricsRequestHandler(request, response)
      } else {
        response.statusCode = 404
        response.end(`not found: metrics are at ${PATH}\n`)
      }
    })
    yield* Effect.acquireRelease(
      listen(server, options),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    const bound = server.address()
    const port = typeof bound === "object" && bound !== null ? bound.port : options.port
    const address = new MetricsAddress({ host: options.host, port })
    yield* Effect.logInfo(`metrics at http://${formatHostPort(address)}${PATH}`)
    return address
  })

/**
 * The exposition as a layer, for a worker helper (or any role) embedded in an app:
 * `Layer.provide(Metrics.layerPrometheus({ host: "127.0.0.1", port: 9464 }))`.
 */
export const layerPrometheus = (options: PrometheusOptions): Layer.Layer<never, MetricsListenFailed> =>
  Layer.scopedDiscard(serve(options))
