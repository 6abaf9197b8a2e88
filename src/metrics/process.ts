/** The Node runtime gauges of a process with metrics on, refreshed at each scrape. */
import { monitorEventLoopDelay } from "node:perf_hooks"
import { Effect, Metric } from "effect"

export const residentMemory = Metric.gauge("garivini_process_resident_memory_bytes", {
  description: "resident set size of the process"
})
export const heapUsed = Metric.gauge("garivini_process_heap_used_bytes", {
  description: "V8 heap in use"
})
export const eventLoopDelay = Metric.gauge("garivini_process_event_loop_delay_seconds", {
  description: "event loop delay since the previous scrape, 99th percentile"
})
export const uptime = Metric.gauge("garivini_process_uptime_seconds", {
  description: "seconds since the process started"
})

/**
 * Starts the event loop delay monitor for the life of the scope; returns the refresh to call
 * before the registry is read (synchronous: it runs inside the HTTP handler).
 */
export const processGauges = Effect.map(
  Effect.acquireRelease(
    Effect.sync(() => {
      const delay = monitorEventLoopDelay({ resolution: 20 })
      delay.enable()
      return delay
    }),
    (delay) => Effect.sync(() => delay.disable())
  ),
  (delay) => () => {
    const memory = process.memoryUsage()
    residentMemory.unsafeUpdate(memory.rss, [])
    heapUsed.unsafeUpdate(memory.heapUsed, [])
    eventLoopDelay.unsafeUpdate(delay.count > 0 ? delay.percentile(99) / 1e9 : 0, [])
    delay.reset()
    uptime.unsafeUpdate(process.uptime(), [])
  }
)
