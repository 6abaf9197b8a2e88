// Every metric of the Driver, in one place. Updated synchronously from the supervisor's tick
// (every 250 ms, a few labels per Driver job) and its exit handler.
import { Metric, MetricLabel } from "effect"
import type { Process } from "./Supervisor.js"

/** What the gauges read of a Driver job's state. */
interface JobProcesses {
  readonly job: { readonly name: string }
  readonly processes: ReadonlyMap<number, Pick<Process, "state">>
}

/** Processes per Driver job and state (`starting`, `idle`, `busy`), tagged `job`, `state`. */
export const processes = Metric.gauge("garivini_driver_processes", {
  description: "worker processes per Driver job and state"
})

/** Processes that crashed and are restarted (after a backoff), tagged `job`. */
export const restarts = Metric.counter("garivini_driver_restarts_total", {
  description: "worker processes that exited unasked and are restarted",
  incremental: true
})

/** Crashes that held a job back as a crash loop (5 or more in a row), tagged `job`. */
export const crashLoopHolds = Metric.counter("garivini_driver_crash_loop_holds_total", {
  description: "crashes that held a Driver job back as a crash loop",
  incremental: true
})

const STATES = ["starting", "idle", "busy"] as const

/** Sets the process gauges from the supervisor's jobs. */
export const recordProcesses = (states: Iterable<JobProcesses>): void => {
  for (const state of states) {
    const counts = { starting: 0, idle: 0, busy: 0 }
    for (const p of state.processes.values()) counts[p.state]++
    const job = MetricLabel.make("job", state.job.name)
    for (const s of STATES) processes.unsafeUpdate(counts[s], [job, MetricLabel.make("state", s)])
  }
}

export const jobTag = (state: JobProcesses) => [MetricLabel.make("job", state.job.name)]
