/**
 * Prometheus metrics for an app that embeds Garivini's roles or worker helper:
 * `Metrics.layerPrometheus({ host, port })` serves `/metrics`; `Metrics.layerStorageGauges()` and
 * `Metrics.layerJobServerGauges()` add the stored-job and job-server gauges (as `garivini up` does).
 */
export { layerPrometheus, MetricsAddress, MetricsListenFailed, serve } from "./Prometheus.js"
export type { PrometheusOptions } from "./Prometheus.js"
export {
  DEFAULT_INTERVAL,
  layerJobServers as layerJobServerGauges,
  layerStorage as layerStorageGauges,
  pollJobServers,
  pollStorage
} from "./poll.js"
