/**
 * The Driver: loads worker modules, keeps each Driver job between its min and max processes
 * (children of this process), scales them from gearmand's queue, and answers the management
 * console. `make` starts it in a scope (closing the scope drains every child); `run` runs it
 * until interrupted or until the console's `shutdown`.
 */
import { Deferred, Duration, Effect, Option, Schedule } from "effect"
import type { Scope } from "effect"
import * as Admin from "../gearman/admin.js"
import type { FunctionStatus } from "../protocol/admin.js"
import { netTransport } from "../gearman/connection.js"
import { ConfigInvalid } from "../errors.js"
import * as Defaults from "../roles/defaults.js"
import { driverJobs, loadModule, type DriverJob, type RuntimeAttributes } from "./attributes.js"
import * as Console from "./Console.js"
import { makeTick } from "./Observer.js"
import * as Supervisor from "./Supervisor.js"

export interface DriverOptions {
  /** Paths of worker modules (each exports a `Driver.define(...)`). */
  readonly modules: ReadonlyArray<string>
  /** Job servers as host:port. */
  readonly servers: ReadonlyArray<string>
  /** Console port (default 47300; 0 disables). */
  readonly consolePort?: number | undefined
  /** Console address (default 127.0.0.1). */
  readonly consoleHost?: string | undefined
  /** A Unix socket for the console too (mode 0600: only this user can connect). */
  readonly consoleSocket?: string | undefined
  /** Seconds between reads of gearmand's status (default 5; 0 disables scaling). */
  readonly interval?: number | undefined
  /** Seconds a process above min stays idle before it drains (default 0). */
  readonly maxIdleTime?: number | undefined
  /** Processes a job may gain per tick of 250 ms, whoever asks (default 5). */
  readonly maxStartPerTick?: number | undefined
  /** Live processes a job may have: a higher max is refused (default 100). */
  readonly maxProcessesPerJob?: number | undefined
  /** Live processes of all jobs: mins adding up to more are refused (default 400). */
  readonly maxProcesses?: number | undefined
  /** Seconds children get to finish their job when the Driver stops (default 30). */
  readonly shutdownTimeout?: number | undefined
  /** `job_runtime_attributes`: min/max per job name (or `<module>::<group>`), over the code's. */
  readonly runtimeAttributes?: Readonly<Record<string, RuntimeAttributes>> | undefined
  /** `worker_options`: per module name, with `GLOBAL` under every module's own. */
  readonly workerOptions?: Readonly<Record<string, Readonly<Record<string, unknown>>>> | undefined
  /** Called each tick for a function with jobs queued that no Driver job serves. */
  readonly onUnknownJob?: ((row: FunctionStatus) => Effect.Effect<void>) | undefined
  /** The compiled child entry (default: dist/driver/childMain.js). */
  readonly childEntry?: string | undefined
}

export interface DriverHandle {
  readonly supervisor: Supervisor.Supervisor
  /** Applies new `job_runtime_attributes` (min/max) without stopping anything. */
  readonly reload: (
    runtimeAttributes: Readonly<Record<string, RuntimeAttributes>>
  ) => Effect.Effect<void, ConfigInvalid>
  /** Completes when the console asked for a shutdown. */
  readonly shutdownRequested: Effect.Effect<void>
}

/** Every module's Driver jobs; two jobs of one name are a configuration error. */
const loadJobs = (modules: ReadonlyArray<string>, runtime: Readonly<Record<string, RuntimeAttributes>>) =>
  Effect.gen(function*() {
    const loaded = yield* Effect.forEach(modules, loadModule)
    const jobs = (yield* Effect.forEach(loaded, (m) => driverJobs(m, runtime))).flat()
    const names = new Set<string>()
    for (const fn of jobs.flatMap((j) => [j.name, ...j.functions.map((f) => `function ${f.registered}`)])) {
      if (names.has(fn))
        return yield* Effect.fail(new ConfigInvalid({ field: "module", reason: `${fn} is declared twice` }))
      names.add(fn)
    }
    return { loaded, jobs }
  })

/** Jobs whose min/max break the process limits are a configuration error (at start and on reload). */
const withinLimits = (limits: Supervisor.ProcessLimits, jobs: ReadonlyArray<DriverJob>) =>
  Option.match(Supervisor.limitsViolation(limits, jobs), {
    onNone: () => Effect.void,
    onSome: (reason) => Effect.fail(new ConfigInvalid({ field: "processes", reason }))
  })

export const make = (
  options: DriverOptions
): Effect.Effect<DriverHandle, ConfigInvalid | Console.ConsoleUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const { loaded, jobs } = yield* loadJobs(options.modules, options.runtimeAttributes ?? {})
    if (jobs.length === 0)
      return yield* Effect.fail(new ConfigInvalid({ field: "module", reason: "no jobs declared in the given modules" }))
    const workerOptions = (job: DriverJob) => ({
      ...options.workerOptions?.["GLOBAL"],
      ...options.workerOptions?.[job.moduleName]
    })
    const limits: Supervisor.ProcessLimits = {
      startPerTick: options.maxStartPerTick ?? Supervisor.DEFAULT_LIMITS.startPerTick,
      perJob: options.maxProcessesPerJob ?? Supervisor.DEFAULT_LIMITS.perJob,
      total: options.maxProcesses ?? Supervisor.DEFAULT_LIMITS.total
    }
    for (
      const [field, value] of [["max_start_per_tick", limits.startPerTick], ["max_processes_per_job", limits.perJob], [
        "max_processes",
        limits.total
      ]] as const
    ) {
      if (!Number.isInteger(value) || value < 1)
        return yield* Effect.fail(new ConfigInvalid({ field, reason: `${value} is not an integer >= 1` }))
    }
    yield* withinLimits(limits, jobs)
    const supervisor = yield* Supervisor.make(jobs, {
      servers: options.servers,
      workerOptions,
      limits,
      shutdownTimeout: Duration.seconds(options.shutdownTimeout ?? Defaults.driver.shutdownTimeout),
      ...(options.childEntry !== undefined ? { childEntry: options.childEntry } : {})
    })
    for (const job of jobs)
      yield* Effect.logDebug(`Added new job: ${job.name} (processes: ${job.min})`)
    const shutdown = yield* Deferred.make<void>()

    // Min processes, and the surplus over max drained, whether or not the observer runs; each
    // tick refills the jobs' start budgets: the first one now, the next 250 ms later (a repeat
    // would run a second one at once, doubling the first tick's budget).
    yield* supervisor.tick
    yield* Effect.forkScoped(Effect.schedule(supervisor.tick, Schedule.spaced("250 millis")))

    const interval = options.interval ?? Defaults.driver.interval
    if (interval > 0) {
      const admin = Admin.make({ servers: options.servers, transport: netTransport() })
      const tick = makeTick(supervisor, admin.queueDepths(), {
        maxIdleTime: options.maxIdleTime ?? Defaults.driver.maxIdleTime,
        onUnknownJob: options.onUnknownJob
      })
      yield* Effect.forkScoped(Effect.repeat(tick, Schedule.spaced(Duration.millis(Math.round(interval * 1000)))))
    }

    const onShutdown = Deferred.succeed(shutdown, undefined)
    const consolePort = options.consolePort ?? Defaults.driver.consolePort
    if (consolePort > 0) {
      yield* Console.serve(supervisor, {
        listen: { _tag: "Tcp", host: options.consoleHost ?? Defaults.driver.consoleHost, port: consolePort },
        onShutdown
      })
    }
    if (options.consoleSocket !== undefined) {
      yield* Console.serve(supervisor, { listen: { _tag: "Unix", path: options.consoleSocket }, onShutdown })
    }
    yield* Effect.logInfo(
      `driver running ${jobs.length} job(s) from ${loaded.map((m) => m.name).join(", ")} on ${
        options.servers.join(", ")
      }`
    )

    return {
      supervisor,
      shutdownRequested: Deferred.await(shutdown),
      reload: (runtime) =>
        Effect.gen(function*() {
          // The modules stay loaded (code is not reloaded): only the attributes are computed again.
          const updated = (yield* Effect.forEach(loaded, (m) => driverJobs(m, runtime))).flat()
          yield* withinLimits(limits, updated)
          for (const job of updated) {
            const state = supervisor.get(job.name)
            if (state._tag === "None") continue
            state.value.min = job.min
            state.value.max = job.max
          }
          yield* Effect.logInfo("configuration reloaded (min/max)")
          // Within this tick's start budget, like every other start.
          yield* supervisor.reconcile
        })
    }
  })

/** Runs the Driver until interrupted or until the console's `shutdown`; then drains every child. */
export const run = (options: DriverOptions): Effect.Effect<void, ConfigInvalid | Console.ConsoleUnavailable> =>
  Effect.scoped(Effect.flatMap(make(options), (driver) => driver.shutdownRequested))
