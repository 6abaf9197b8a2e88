/**
 * `garivini driver --module <path>... [--config <file>]`: runs the Driver. The file takes the
 * original's keys (`server`, `console_port`, `interval`, `max_idle_time`, `loglevel`,
 * `job_runtime_attributes`, `worker_options`) and a few of ours. Each key: flag, else its
 * `GARIVINI_DRIVER_*` variable (`GARIVINI_GEARMAND` for the servers), else the file, else default.
 * SIGTERM/SIGINT drain every child (grace period `shutdown_timeout`) and exit 0; SIGHUP reads the
 * file again and applies its min/max; `--pid-file` is created exclusively at start (a Driver
 * already running keeps it) and removed at exit.
 */
import { Command, Options } from "@effect/cli"
import { Effect, Either, Layer, Logger, LogLevel, Option, Runtime, Schema } from "effect"
import { ConfigInvalid } from "../errors.js"
import * as Driver from "../driver/Driver.js"
import * as Defaults from "../roles/defaults.js"
import { parseDbTargets } from "../storage/targets.js"
import { formatHostPort, type HostPort, parseHost, parseHostPort } from "../hostPort.js"
import {
  DEFAULT_GEARMAND,
  env,
  type LogFormat,
  optionalFloat,
  optionalInteger,
  optionalText,
  readConfigFile,
  metricsOptions,
  resolveLogFormat,
  resolveMetricsListen
} from "./config.js"
import { warnIfExposed } from "./exposure.js"
import { exposition } from "./metrics.js"
import * as PidFile from "./pidFile.js"
import { key, type Key, listKey, NumberText, readOrUndefined, sources } from "./sources.js"
import { loggerLayer, reportFailure } from "./shared.js"

const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const Seconds = Schema.Number.pipe(Schema.nonNegative())
const LEVELS: Readonly<Record<string, LogLevel.LogLevel>> = {
  TRACE: LogLevel.Trace,
  DEBUG: LogLevel.Debug,
  INFO: LogLevel.Info,
  WARN: LogLevel.Warning,
  WARNING: LogLevel.Warning,
  ERROR: LogLevel.Error,
  FATAL: LogLevel.Fatal
}
const Level = Schema.String.pipe(
  Schema.filter((s) => s.toUpperCase() in LEVELS, {
    message: () => `expected one of ${Object.keys(LEVELS).join(", ")}`
  })
)

/** The Driver's config file: the original's keys, plus ours (unknown keys are errors). */
export const DriverFile = Schema.Struct({
  server: Schema.optional(Schema.String),
  console_port: Schema.optional(NonNegativeInt),
  console_host: Schema.optional(Schema.String),
  console_socket: Schema.optional(Schema.String),
  interval: Schema.optional(Seconds),
  max_idle_time: Schema.optional(Seconds),
  max_start_per_tick: Schema.optional(Schema.Int.pipe(Schema.positive())),
  max_processes_per_job: Schema.optional(Schema.Int.pipe(Schema.positive())),
  max_processes: Schema.optional(Schema.Int.pipe(Schema.positive())),
  shutdown_timeout: Schema.optional(Seconds),
  loglevel: Schema.optional(Level),
  pid_file: Schema.optional(Schema.String),
  modules: Schema.optional(Schema.Array(Schema.String)),
  job_runtime_attributes: Schema.optional(
    Schema.Record({
      key: Schema.String,
      value: Schema.Struct({
        min_processes: Schema.optional(NonNegativeInt),
        max_processes: Schema.optional(NonNegativeInt)
      })
    })
  ),
  worker_options: Schema.optional(
    Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: Schema.Unknown }) })
  )
})
export type DriverFile = typeof DriverFile.Type

/** `host[:port][,host[:port]]` (default port 4730), as the original's `server`. */
export const parseServers = (text: string): Either.Either<ReadonlyArray<string>, ConfigInvalid> => {
  const entries = text.split(/[\s,]+/).filter((s) => s !== "")
  if (entries.length === 0) return Either.left(new ConfigInvalid({ field: "server", reason: "no job server given" }))
  return Either.all(
    entries.map((entry) => Either.map(parseHostPort(entry, { field: "server", defaultPort: 4730 }), formatHostPort))
  )
}

const flags = {
  module: Options.text("module").pipe(
    Options.repeated,
    Options.withDescription(
      "A worker module (a .js/.mjs file exporting Driver.define(...)); repeat for several (env GARIVINI_DRIVER_MODULES)"
    )
  ),
  config: optionalText(
    "config",
    "A YAML or JSON file with the original's keys (server, console_port, interval, max_idle_time, loglevel, job_runtime_attributes, worker_options); env GARIVINI_DRIVER_CONFIG"
  ),
  server: optionalText(
    "server",
    `Job servers as host[:port][,host[:port]], IPv6 as [::1]:4730 (env GARIVINI_GEARMAND; default ${DEFAULT_GEARMAND})`
  ),
  consolePort: optionalInteger(
    "console-port",
    `Port of the management console (env GARIVINI_DRIVER_CONSOLE_PORT; default ${Defaults.driver.consolePort}; 0 disables)`
  ),
  consoleHost: optionalText(
    "console-host",
    `Address the console binds to (env GARIVINI_DRIVER_CONSOLE_HOST; default ${Defaults.driver.consoleHost})`
  ),
  consoleSocket: optionalText(
    "console-socket",
    "Also serve the console on this Unix socket (mode 0600: only this user; env GARIVINI_DRIVER_CONSOLE_SOCKET)"
  ),
  interval: optionalFloat(
    "interval",
    `Seconds between reads of gearmand's status (env GARIVINI_DRIVER_INTERVAL; default ${Defaults.driver.interval}; 0 disables scaling)`
  ),
  maxIdleTime: optionalFloat(
    "max-idle-time",
    `Seconds a process above min may be idle before it drains (env GARIVINI_DRIVER_MAX_IDLE_TIME; default ${Defaults.driver.maxIdleTime})`
  ),
  loglevel: optionalText("loglevel", "TRACE, DEBUG, INFO (default), WARN or ERROR (env GARIVINI_DRIVER_LOGLEVEL)"),
  pidFile: optionalText(
    "pid-file",
    "Write the Driver's pid to this file (removed at exit; env GARIVINI_DRIVER_PID_FILE)"
  ),
  metricsListen: metricsOptions.metricsListen,
  logFormat: Options.choice("log-format", ["pretty", "json", "logfmt"]).pipe(
    Options.optional,
    Options.withDescription("Log lines as pretty text, JSON or logfmt (env GARIVINI_LOG_FORMAT)")
  )
}

type Flags = {
  readonly module: ReadonlyArray<string>
  readonly config: Option.Option<string>
  readonly server: Option.Option<string>
  readonly consolePort: Option.Option<number>
  readonly consoleHost: Option.Option<string>
  readonly consoleSocket: Option.Option<string>
  readonly interval: Option.Option<number>
  readonly maxIdleTime: Option.Option<number>
  readonly loglevel: Option.Option<string>
  readonly pidFile: Option.Option<string>
  readonly metricsListen: Option.Option<string>
  readonly logFormat: Option.Option<LogFormat>
}

export interface DriverSettings {
  readonly options: Driver.DriverOptions
  readonly level: LogLevel.LogLevel
  readonly format: LogFormat
  readonly pidFile: string | undefined
  readonly configPath: string | undefined
  readonly metricsListen: Option.Option<HostPort>
}

const NonNegativeIntText = Schema.compose(NumberText, NonNegativeInt)
const PositiveIntText = Schema.compose(NumberText, Schema.Int.pipe(Schema.positive()))
const SecondsText = Schema.compose(NumberText, Seconds)

/**
 * The Driver's keys: its variable (`GARIVINI_DRIVER_*`; the job servers are `GARIVINI_GEARMAND`,
 * as for every command) and its key in the Driver's file (the original's names).
 */
export const driverKeys = {
  config: key("GARIVINI_DRIVER_CONFIG", undefined, Schema.String),
  modules: listKey("GARIVINI_DRIVER_MODULES", "modules", Schema.String),
  server: key("GARIVINI_GEARMAND", "server", Schema.String),
  consolePort: key("GARIVINI_DRIVER_CONSOLE_PORT", "console_port", NonNegativeIntText),
  consoleHost: key("GARIVINI_DRIVER_CONSOLE_HOST", "console_host", Schema.String),
  consoleSocket: key("GARIVINI_DRIVER_CONSOLE_SOCKET", "console_socket", Schema.String),
  interval: key("GARIVINI_DRIVER_INTERVAL", "interval", SecondsText),
  maxIdleTime: key("GARIVINI_DRIVER_MAX_IDLE_TIME", "max_idle_time", SecondsText),
  maxStartPerTick: key("GARIVINI_DRIVER_MAX_START_PER_TICK", "max_start_per_tick", PositiveIntText),
  maxProcessesPerJob: key("GARIVINI_DRIVER_MAX_PROCESSES_PER_JOB", "max_processes_per_job", PositiveIntText),
  maxProcesses: key("GARIVINI_DRIVER_MAX_PROCESSES", "max_processes", PositiveIntText),
  shutdownTimeout: key("GARIVINI_DRIVER_SHUTDOWN_TIMEOUT", "shutdown_timeout", SecondsText),
  loglevel: key("GARIVINI_DRIVER_LOGLEVEL", "loglevel", Level),
  pidFile: key("GARIVINI_DRIVER_PID_FILE", "pid_file", Schema.String)
} as const

/** Flag, else environment, else the Driver's file, else defaults (src/cli/sources.ts), key by key. */
export const resolveDriver = (f: Flags): Effect.Effect<DriverSettings, ConfigInvalid> =>
  Effect.gen(function*() {
    const configPath = yield* readOrUndefined(sources(undefined, {}), driverKeys.config, f.config)
    const file: DriverFile = configPath === undefined ? {} : yield* readConfigFile(configPath, DriverFile)
    const from = sources(configPath, file)
    const get = <A>(setting: Key<A>, flag?: Option.Option<A>) => readOrUndefined(from, setting, flag)
    const modules = (yield* get(driverKeys.modules, f.module.length > 0 ? Option.some(f.module) : Option.none())) ?? []
    if (modules.length === 0)
      return yield* Effect.fail(new ConfigInvalid({ field: "module", reason: "give at least one --module" }))
    const servers = yield* parseServers((yield* get(driverKeys.server, f.server)) ?? DEFAULT_GEARMAND)
    const consolePort = yield* get(driverKeys.consolePort, f.consolePort)
    if (consolePort !== undefined && (!Number.isInteger(consolePort) || consolePort < 0 || consolePort > 65535)) {
      return yield* Effect.fail(new ConfigInvalid({ field: "console-port", reason: `${consolePort} is not a port` }))
    }
    const consoleHostText = yield* get(driverKeys.consoleHost, f.consoleHost)
    const consoleHost = consoleHostText === undefined ? undefined : yield* parseHost(consoleHostText, "console-host")
    const interval = yield* get(driverKeys.interval, f.interval)
    const maxIdleTime = yield* get(driverKeys.maxIdleTime, f.maxIdleTime)
    for (const [field, value] of [["interval", interval], ["max-idle-time", maxIdleTime]] as const) {
      if (value !== undefined && !(value >= 0))
        return yield* Effect.fail(new ConfigInvalid({ field, reason: `${value} is not a number of seconds >= 0` }))
    }
    const levelName = ((yield* get(driverKeys.loglevel, f.loglevel)) ?? "INFO").toUpperCase()
    const level = LEVELS[levelName]
    if (level === undefined)
      return yield* Effect.fail(
        new ConfigInvalid({ field: "loglevel", reason: `${JSON.stringify(levelName)} is not a log level` })
      )
    // The children read GARIVINI_DB for durable jobs: a bad value stops here, in one line.
    const db = env("GARIVINI_DB")
    if (db !== undefined)
      yield* parseDbTargets(db)
    const format = yield* resolveLogFormat(f.logFormat)
    return {
      options: {
        modules,
        servers,
        consolePort,
        consoleHost,
        consoleSocket: yield* get(driverKeys.consoleSocket, f.consoleSocket),
        interval,
        maxIdleTime,
        maxStartPerTick: yield* get(driverKeys.maxStartPerTick),
        maxProcessesPerJob: yield* get(driverKeys.maxProcessesPerJob),
        maxProcesses: yield* get(driverKeys.maxProcesses),
        shutdownTimeout: yield* get(driverKeys.shutdownTimeout),
        runtimeAttributes: file.job_runtime_attributes,
        workerOptions: file.worker_options
      },
      level,
      format,
      pidFile: yield* get(driverKeys.pidFile, f.pidFile),
      configPath,
      // GARIVINI_METRICS_LISTEN, as for every command; the Driver's file has no such key.
      metricsListen: yield* resolveMetricsListen(f.metricsListen, sources(undefined, {}))
    }
  })

/** SIGHUP: read the file again and apply its min/max; a bad file is logged and changes nothing. */
const reloadOnHangup = (driver: Driver.DriverHandle, configPath: string | undefined) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const reload = Effect.gen(function*() {
      if (configPath === undefined) return yield* Effect.logInfo("SIGHUP: no --config to reload")
      const file = yield* readConfigFile(configPath, DriverFile)
      yield* driver.reload(file.job_runtime_attributes ?? {})
    }).pipe(Effect.catchAll((e) => Effect.logError(`SIGHUP: configuration not reloaded: ${e.message}`)))
    const onHangup = () => Runtime.runFork(runtime)(reload)
    yield* Effect.acquireRelease(Effect.sync(() => process.on("SIGHUP", onHangup)), () =>
      Effect.sync(() => process.off("SIGHUP", onHangup)))
  })

export const driverCommand = Command.make("driver", flags, (f) =>
  reportFailure(
    Effect.flatMap(resolveDriver(f), (settings) =>
      Effect.scoped(
        Effect.gen(function*() {
          if (settings.pidFile !== undefined) yield* PidFile.hold(settings.pidFile)
          yield* Layer.buildWithScope(exposition(settings.metricsListen), yield* Effect.scope)
          const driver = yield* Driver.make(settings.options)
          const consoleHost = settings.options.consoleHost ?? Defaults.driver.consoleHost
          if (settings.options.consolePort !== 0) {
            yield* warnIfExposed(
              "the Driver console",
              consoleHost,
              formatHostPort({ host: consoleHost, port: settings.options.consolePort ?? Defaults.driver.consolePort })
            )
          }
          yield* reloadOnHangup(driver, settings.configPath)
          yield* driver.shutdownRequested
          yield* Effect.logInfo("shutdown requested on the console")
        })
      ).pipe(Effect.provide(Layer.merge(loggerLayer(settings.format), Logger.minimumLogLevel(settings.level)))))
  )).pipe(
    Command.withDescription(
      "Run worker modules in child processes, scaled from gearmand's queue, with a management console (Gearman::Driver)"
    )
  )
