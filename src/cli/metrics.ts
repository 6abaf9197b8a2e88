/**
 * `--metrics-listen` for the long-running commands: the Prometheus endpoint (scoped: a port in use
 * fails the start) and, where the process has storage and job servers, the gauges read on an
 * interval. Nothing at all when the flag is absent.
 */
import { Layer, Option } from "effect"
import type { Duration } from "effect"
import type { Gearman } from "../gearman/Gearman.js"
import type { HostPort } from "../hostPort.js"
import * as Poll from "../metrics/poll.js"
import { layerPrometheus } from "../metrics/Prometheus.js"
import type { MetricsListenFailed } from "../metrics/Prometheus.js"
import type { Storage } from "../storage/Storage.js"

/** The endpoint alone (gearmand, the Driver, consume, controller). */
export const exposition = (listen: Option.Option<HostPort>): Layer.Layer<never, MetricsListenFailed> =>
  Option.match(listen, { onNone: () => Layer.empty, onSome: (address) => layerPrometheus(address) })

/** The endpoint and the stored-job and job-server gauges (queue-runner, injector, run, up). */
export const withPollers = (
  listen: Option.Option<HostPort>,
  interval?: Duration.DurationInput
): Layer.Layer<never, MetricsListenFailed, Storage | Gearman> =>
  Option.match(listen, {
    onNone: () => Layer.empty,
    onSome: (address) =>
      Layer.mergeAll(layerPrometheus(address), Poll.layerStorage(interval), Poll.layerJobServers(interval))
  })
