/**
 * The command line's configuration, in this order of precedence: flags, environment
 * (`GARIVINI_*`), a config file (`--config`, YAML or JSON). Every source is decoded with Schema;
 * a bad value fails with `ConfigInvalid` naming the field. Passwords are `Redacted` as soon as
 * they are read.
 */
import { readFileSync } from "node:fs"
import { Options } from "@effect/cli"
import type { LogLevel } from "effect"
import { Config, Duration, Effect, Either, Option, ParseResult, Redacted, Schema } from "effect"
import { parse as parseYaml } from "yaml"
import {
  DEFAULT_SQLITE_TARGET,
  isSqliteTarget,
  parseShardUrl,
  parseSqliteTarget,
  validateShards
} from "../storage/targets.js"
import type { ShardConfig } from "../storage/targets.js"
import { ConfigInvalid } from "../errors.js"
import { type HostPort, parseHostPort } from "../hostPort.js"
import { flagLevel, LOG_LEVELS, type LogLevelName, levelNamed, LogLevelText } from "./logging.js"
import type { ControllerOptions } from "../roles/Controller.js"
import * as Defaults from "../roles/defaults.js"
import type { InjectorOptions } from "../roles/Injector.js"
import { settings as queueRunnerSettings, type QueueRunnerOptions } from "../roles/QueueRunner.js"
import { rowOf, type ScheduleSpec } from "../roles/Scheduler.js"
import { concurrencyProblem, type ControlPatch, parseRate } from "../storage/flow.js"
import {
  key,
  type Key,
  listKey,
  NumberText,
  read,
  readOrUndefined,
  type Sources,
  sources,
  splitList
} from "./sources.js"

export const DEFAULT_GEARMAND = Defaults.gearmand

export type LogFormat = "pretty" | "json" | "logfmt"
const isLogFormat = (s: string): s is LogFormat => s === "pretty" || s === "json" || s === "logfmt"

export interface Settings {
  /** The MySQL shards; empty when the jobs are in a SQLite file. */
  readonly shards: ReadonlyArray<ShardConfig>
  /** The SQLite file (absolute) when `--db sqlite:<path>` (or the same in GARIVINI_DB / the file) was given. */
  readonly sqlite: Option.Option<string>
  /** Whether the database was configured (flag, environment or file) rather than defaulted. */
  readonly dbGiven: boolean
  readonly gearmand: ReadonlyArray<string>
  /** Whether job servers were configured (flag, environment or file) rather than defaulted. */
  readonly gearmandGiven: boolean
  readonly queueRunner: QueueRunnerOptions
  readonly injector: InjectorOptions
  readonly controller: ControllerOptions
  /** How long a short MySQL operation may wait for its server (undefined: the storage default). */
  readonly statementTimeout?: Duration.Duration | undefined
  readonly logFormat: LogFormat
  /** `--log-level`, else GARIVINI_LOG_LEVEL, else the file's `log.level`; none: the command's default. */
  readonly logLevel: Option.Option<LogLevel.LogLevel>
  /** Where `/metrics` is served (`--metrics-listen`); none: metrics are off. */
  readonly metricsListen: Option.Option<HostPort>
  /** How often the stored-job and job-server gauges are read (undefined: every 15 s). */
  readonly metricsInterval?: Duration.Duration | undefined
  /** The file's `functions` and `schedules` (checked), applied when a QueueRunner starts. */
  readonly flow: FlowConfig
}

export interface FlowConfig {
  readonly functions: ReadonlyArray<{ readonly funcname: string; readonly patch: ControlPatch }>
  readonly schedules: ReadonlyArray<ScheduleSpec>
}

// -- the file ---------------------------------------------------------------------------------

const Seconds = Schema.Number.pipe(Schema.nonNegative())
const PositiveInt = Schema.Int.pipe(Schema.positive())

const DbEntry = Schema.Union(
  Schema.String,
  Schema.Struct({ url: Schema.String, id: Schema.optional(PositiveInt) })
)

/** What a config file may hold; unknown keys are errors (a typo should not pass silently). */
export const FileConfig = Schema.Struct({
  db: Schema.optional(Schema.Array(DbEntry)),
  gearmand: Schema.optional(Schema.Array(Schema.String)),
  queueRunner: Schema.optional(Schema.Struct({
    batchMaxSize: Schema.optional(Schema.Int),
    batchMaxBytes: Schema.optional(Schema.Int),
    batchRunSleep: Schema.optional(Seconds),
    queueWatermarkDepth: Schema.optional(Schema.Int),
    lease: Schema.optional(Seconds),
    deferFor: Schema.optional(Seconds),
    shardRetryMax: Schema.optional(Seconds)
  })),
  injector: Schema.optional(Schema.Struct({
    lease: Schema.optional(Seconds),
    queueWatermarkDepth: Schema.optional(Schema.Int),
    concurrency: Schema.optional(PositiveInt),
    maxRequestJobs: Schema.optional(PositiveInt),
    maxRequestBytes: Schema.optional(PositiveInt)
  })),
  controller: Schema.optional(Schema.Struct({
    concurrency: Schema.optional(PositiveInt),
    timeout: Schema.optional(Seconds),
    maxAttempts: Schema.optional(PositiveInt)
  })),
  metrics: Schema.optional(Schema.Struct({
    listen: Schema.optional(Schema.String),
    interval: Schema.optional(Seconds)
  })),
  log: Schema.optional(Schema.Struct({
    format: Schema.optional(Schema.Literal("pretty", "json", "logfmt")),
    level: Schema.optional(Schema.String)
  })),
  storage: Schema.optional(Schema.Struct({
    statementTimeout: Schema.optional(Seconds)
  })),
  // The web console of `garivini web` (its --listen) and `garivini up` (its --web-listen).
  web: Schema.optional(Schema.Struct({
    listen: Schema.optional(Schema.String)
  })),
  // The embedded job server of `garivini gearmand` and `garivini up` (their --listen, --max-*).
  /** Flow control per function, written to the database when a QueueRunner starts (docs/flow-control.md). */
  functions: Schema.optional(Schema.Record({
    key: Schema.String,
    value: Schema.Struct({
      paused: Schema.optional(Schema.Boolean),
      /** `50/s`, `600/min`...; null removes the limit. */
      rate: Schema.optional(Schema.NullOr(Schema.String)),
      burst: Schema.optional(PositiveInt),
      /** At most this many jobs at once; null removes the limit. */
      concurrency: Schema.optional(Schema.NullOr(PositiveInt))
    })
  })),
  /** Recurring schedules by name, created or updated when a QueueRunner starts. */
  schedules: Schema.optional(Schema.Record({
    key: Schema.String,
    value: Schema.Struct({
      cron: Schema.String,
      function: Schema.String,
      arg: Schema.optional(Schema.String),
      tz: Schema.optional(Schema.String),
      missed: Schema.optional(Schema.Literal("skip", "run-once"))
    })
  })),
  embedded: Schema.optional(Schema.Struct({
    listen: Schema.optional(Schema.String),
    maxQueue: Schema.optional(Schema.Int),
    maxQueueBytes: Schema.optional(Schema.Int),
    maxTotalBytes: Schema.optional(Schema.Int),
    maxPacket: Schema.optional(Schema.Int),
    maxBacklog: Schema.optional(Schema.Int),
    maxInputBytes: Schema.optional(Schema.Int),
    maxConnections: Schema.optional(Schema.Int)
  }))
})
export type FileConfig = typeof FileConfig.Type

/** The first problem of a decode, as the field it concerns (in which file) and what is wrong with it. */
const firstIssue = (file: string, error: ParseResult.ParseError): ConfigInvalid => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const path = issue === undefined || issue.path.length === 0 ? "(top level)" : issue.path.map(String).join(".")
  return new ConfigInvalid({ field: `${path} (in ${file})`, reason: issue?.message ?? "invalid", cause: error })
}

/** Reads a config file (`.json` as JSON, anything else as YAML, a superset of JSON) and decodes it with `schema` (unknown keys rejected). */
export const readConfigFile = <A, I>(path: string, schema: Schema.Schema<A, I>): Either.Either<A, ConfigInvalid> => {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (e) {
    const code = e instanceof Error && "code" in e ? String(e.code) : String(e)
    return Either.left(new ConfigInvalid({ field: "config", reason: `cannot read ${path}: ${code}`, cause: e }))
  }
  let raw: unknown
  try {
    raw = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text, { logLevel: "error" })
  } catch (e) {
    return Either.left(
      new ConfigInvalid({
        field: "config",
        reason: `${path} is not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${String(e).split("\n")[0]}`,
        cause: e
      })
    )
  }
  return Either.mapLeft(
    Schema.decodeUnknownEither(schema, { onExcessProperty: "error" })(raw ?? {}),
    (e) => firstIssue(path, e)
  )
}

export const loadFile = (path: string): Either.Either<FileConfig, ConfigInvalid> => readConfigFile(path, FileConfig)

// -- flags ------------------------------------------------------------------------------------

/** A flag that may be absent (its fallbacks then decide), with its help text. */
export const optionalText = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))
export const optionalInteger = (name: string, description: string) =>
  Options.integer(name).pipe(Options.optional, Options.withDescription(description))
export const optionalFloat = (name: string, description: string) =>
  Options.float(name).pipe(Options.optional, Options.withDescription(description))

// Help lists flags in groups, in this order: connection, role tuning, the command's own, output.
// @effect/cli has no sections, so each description starts with its group.
const CONNECTION = "[connection]"
const TUNING = "[role tuning]"
const OUTPUT = "[output]"

/** The config file: every command that reads settings. */
export const configOption = {
  config: optionalText(
    "config",
    `${CONNECTION} A YAML or JSON file with settings flags express badly (several shards, job servers, per-role options); env GARIVINI_CONFIG`
  )
}

/** Where the jobs are stored. */
export const dbOption = {
  db: Options.text("db").pipe(
    Options.repeated,
    // Optional so the usage line shows it in brackets: it has a default (and env, file).
    Options.optional,
    // Wrapped at once (Options.redacted rejects repeated values in @effect/cli 0.77).
    Options.map((urls) => Option.getOrElse(urls, () => []).map((url) => Redacted.make(url))),
    Options.withDescription(
      `${CONNECTION} A shard as mysql://user:pass@host:port/db[?id=N], repeated for several, or one SQLite file as sqlite:<path> (env GARIVINI_DB, comma-separated; default sqlite:./garivini.db)`
    )
  ),
  statementTimeout: optionalFloat(
    "statement-timeout",
    `${CONNECTION} Seconds a MySQL insert, claim, update or delete by id may wait for its server before its connection is closed and it fails (default ${
      Duration.toSeconds(Defaults.storage.statementTimeout)
    }); env GARIVINI_STATEMENT_TIMEOUT`
  )
}

/** The job servers. */
export const gearmandOption = {
  gearmand: Options.text("gearmand").pipe(
    Options.repeated,
    Options.optional,
    Options.map(Option.getOrElse((): ReadonlyArray<string> => [])),
    Options.withDescription(
      `${CONNECTION} A job server as host:port; repeat for several (env GARIVINI_GEARMAND; default ${DEFAULT_GEARMAND})`
    )
  )
}

/** How log lines are written, and from which level. */
export const outputOptions = {
  logFormat: Options.choice("log-format", ["pretty", "json", "logfmt"]).pipe(
    Options.optional,
    Options.withDescription(
      `${OUTPUT} Log lines (on stderr) as pretty text (default on a terminal), JSON or logfmt; env GARIVINI_LOG_FORMAT`
    )
  ),
  // Also @effect/cli's built-in option, which sees it only before the command's own flags
  // (logging.ts): declared here too so it works anywhere on the line.
  logLevel: Options.choice("log-level", LOG_LEVELS).pipe(
    Options.optional,
    Options.withDescription(
      `${OUTPUT} The least level logged (env GARIVINI_LOG_LEVEL; default warning for commands that answer and exit, info for those that keep running)`
    )
  )
}

/** Prometheus metrics: every long-running command. */
export const metricsOptions = {
  metricsListen: optionalText(
    "metrics-listen",
    `${OUTPUT} Serve Prometheus metrics at http://HOST:PORT/metrics (a port alone: on 127.0.0.1; default off); env GARIVINI_METRICS_LISTEN`
  )
}

/** The storage only (commands that never talk to gearmand). */
export const storageOptions = { ...configOption, ...dbOption }

/** Where the jobs are: shards and job servers (every command that talks to both). */
export const connectionOptions = { ...configOption, ...dbOption, ...gearmandOption }

const { controller: C, injector: I, queueRunner: Q } = Defaults
const secondsOf = (d: Duration.Duration) => Duration.toSeconds(d)

export const queueRunnerOptions = {
  batchMaxSize: optionalInteger(
    "batch-max-size",
    `${TUNING} Largest batch claimed per shard and round (default ${Q.batchMaxSize}, at least 50)`
  ),
  batchMaxBytes: optionalInteger(
    "batch-max-bytes",
    `${TUNING} Bytes of args claimed per shard and round, at most; a larger job goes alone (default ${Q.batchMaxBytes})`
  ),
  batchRunSleep: optionalFloat(
    "batch-run-sleep",
    `${TUNING} Seconds between rounds, at most (default ${secondsOf(Q.batchRunSleep)})`
  ),
  queueWatermarkDepth: optionalInteger(
    "queue-watermark-depth",
    `${TUNING} Defer jobs of functions with more queued in gearmand (default ${Q.queueWatermarkDepth}; 0 disables)`
  ),
  lease: optionalFloat(
    "lease",
    `${TUNING} Seconds a dispatched job is leased before it is dispatched again (default ${secondsOf(Q.lease)})`
  ),
  deferFor: optionalFloat(
    "defer-for",
    `${TUNING} Seconds the overflow of a round that crossed the watermark waits (default ${
      secondsOf(Q.deferFor)
    }; the original waited 60)`
  ),
  shardRetryMax: optionalFloat(
    "shard-retry-max",
    `${TUNING} Seconds between claims of a shard that fails them, at most: once it is back its jobs go out within about this (default ${
      secondsOf(Q.shardRetryMax)
    })`
  )
}

export const controllerOptions = {
  controllerConcurrency: optionalInteger(
    "controller-concurrency",
    `${TUNING} Jobs a Controller runs at once (default ${C.concurrency})`
  ),
  controllerTimeout: optionalFloat(
    "controller-timeout",
    `${TUNING} Seconds a Controller waits for a job (default ${secondsOf(C.timeout)})`
  ),
  controllerMaxAttempts: optionalInteger(
    "controller-max-attempts",
    `${TUNING} Attempts a controller job gets before it is dead: kept, not run again (default ${C.maxAttempts})`
  )
}

export const injectorOptions = {
  injectorConcurrency: optionalInteger(
    "injector-concurrency",
    `${TUNING} Injects handled at once (default ${I.concurrency})`
  ),
  injectorMaxRequestJobs: optionalInteger(
    "injector-max-request-jobs",
    `${TUNING} Jobs one inject_jobs request may carry; more are rejected (default ${I.maxRequestJobs})`
  ),
  injectorMaxRequestBytes: optionalInteger(
    "injector-max-request-bytes",
    `${TUNING} Bytes one inject_jobs request may have; more are rejected (default ${I.maxRequestBytes})`
  )
}

/** The web console's own flags (`garivini web`, `garivini up`). */
export const webConsoleOptions = {
  webToken: Options.redacted("web-token").pipe(
    Options.optional,
    Options.withDescription(
      "A token every request to the web console must carry (Authorization: Bearer, or the cookie a /?token= link sets); env GARIVINI_WEB_TOKEN; default none"
    )
  ),
  readOnly: Options.boolean("read-only").pipe(
    Options.withDescription("The web console shows jobs but hides and refuses every action (retry, delete)")
  )
}

/** The flags `resolve` reads; a command without one of them passes nothing (its sources still count). */
type ConnectionFlags = {
  readonly config: Option.Option<string>
  readonly db?: ReadonlyArray<Redacted.Redacted<string>>
  readonly gearmand?: ReadonlyArray<string>
  readonly logFormat: Option.Option<LogFormat>
  readonly logLevel?: Option.Option<LogLevelName>
  readonly metricsListen?: Option.Option<string>
}
type RunnerFlags = { readonly [K in keyof typeof queueRunnerOptions]: Option.Option<number> }
type ControllerFlags = { readonly [K in keyof typeof controllerOptions]: Option.Option<number> }
type InjectorFlags = { readonly [K in keyof typeof injectorOptions]: Option.Option<number> }
type StorageFlags = { readonly statementTimeout: Option.Option<number> }

// -- resolution -------------------------------------------------------------------------------

/** An environment variable, or undefined when it is unset or blank. */
export const env = (name: string): string | undefined => {
  const value = process.env[name]
  return value === undefined || value.trim() === "" ? undefined : value
}

const LogFormatText: Schema.Schema<LogFormat, string> = Schema.String.pipe(
  Schema.filter(isLogFormat, { message: (issue) => `${JSON.stringify(issue.actual)} is not pretty, json or logfmt` })
)

type DbGiven = ReadonlyArray<{ readonly url: Redacted.Redacted<string>; readonly id: number | undefined }>

/** Databases: a comma/space list in GARIVINI_DB, `db: [URL or {url, id}]` in the file; redacted as read. */
const dbKey: Key<DbGiven> = {
  env: {
    name: "GARIVINI_DB",
    config: Config.map(
      Config.redacted("GARIVINI_DB"),
      (text) => splitList(Redacted.value(text)).map((url) => ({ url: Redacted.make(url), id: undefined }))
    )
  },
  file: {
    path: "db",
    config: Config.array(
      Config.redacted().pipe(
        Config.map((url) => ({ url, id: undefined as number | undefined })),
        Config.orElse(() =>
          Config.map(
            Config.all({ url: Config.redacted("url"), id: Config.option(Config.integer("id")) }),
            ({ id, url }) => ({ url, id: Option.getOrUndefined(id) })
          )
        )
      ),
      "db"
    )
  }
}

/**
 * Every key the roles' commands read, with its variable and its place in the file (docs/operations.md
 * has the table). Numbers are checked for range where they are used (QueueRunner.settings, the roles).
 */
export const keys = {
  config: key("GARIVINI_CONFIG", undefined, Schema.String),
  db: dbKey,
  gearmand: listKey("GARIVINI_GEARMAND", "gearmand", Schema.String),
  logFormat: key("GARIVINI_LOG_FORMAT", "log.format", LogFormatText),
  logLevel: key("GARIVINI_LOG_LEVEL", "log.level", LogLevelText),
  metricsListen: key("GARIVINI_METRICS_LISTEN", "metrics.listen", Schema.String),
  metricsInterval: key("GARIVINI_METRICS_INTERVAL", "metrics.interval", NumberText),
  batchMaxSize: key("GARIVINI_BATCH_MAX_SIZE", "queueRunner.batchMaxSize", NumberText),
  batchMaxBytes: key("GARIVINI_BATCH_MAX_BYTES", "queueRunner.batchMaxBytes", NumberText),
  batchRunSleep: key("GARIVINI_BATCH_RUN_SLEEP", "queueRunner.batchRunSleep", NumberText),
  queueWatermarkDepth: key("GARIVINI_QUEUE_WATERMARK_DEPTH", "queueRunner.queueWatermarkDepth", NumberText),
  lease: key("GARIVINI_LEASE", "queueRunner.lease", NumberText),
  deferFor: key("GARIVINI_DEFER_FOR", "queueRunner.deferFor", NumberText),
  shardRetryMax: key("GARIVINI_SHARD_RETRY_MAX", "queueRunner.shardRetryMax", NumberText),
  // The Injector's lease and watermark are the runner's: its own file keys count only without those.
  injectorLease: key(undefined, "injector.lease", NumberText),
  injectorWatermark: key(undefined, "injector.queueWatermarkDepth", NumberText),
  injectorConcurrency: key("GARIVINI_INJECTOR_CONCURRENCY", "injector.concurrency", NumberText),
  injectorMaxRequestJobs: key("GARIVINI_INJECTOR_MAX_REQUEST_JOBS", "injector.maxRequestJobs", NumberText),
  injectorMaxRequestBytes: key("GARIVINI_INJECTOR_MAX_REQUEST_BYTES", "injector.maxRequestBytes", NumberText),
  controllerConcurrency: key("GARIVINI_CONTROLLER_CONCURRENCY", "controller.concurrency", NumberText),
  controllerTimeout: key("GARIVINI_CONTROLLER_TIMEOUT", "controller.timeout", NumberText),
  controllerMaxAttempts: key("GARIVINI_CONTROLLER_MAX_ATTEMPTS", "controller.maxAttempts", NumberText),
  statementTimeout: key("GARIVINI_STATEMENT_TIMEOUT", "storage.statementTimeout", NumberText)
} as const

const duration = (s: number | undefined) => s === undefined ? undefined : Duration.millis(Math.round(s * 1000))

/** A job server as host:port (`[::1]:4730` for IPv6; port 0 refused), as given. */
export const checkServer = (server: string, field = "gearmand"): Either.Either<string, ConfigInvalid> =>
  Either.map(parseHostPort(server, { field }), () => server)

/**
 * The databases: MySQL shards, or one SQLite file (a file is one shard: it cannot be combined
 * with others, and its jobs have dbid 1).
 */
const resolveDatabases = (
  dbs: ReadonlyArray<{ readonly url: string; readonly id: number | undefined }>
): Effect.Effect<
  { readonly shards: ReadonlyArray<ShardConfig>; readonly sqlite: Option.Option<string> },
  ConfigInvalid
> =>
  Effect.gen(function*() {
    const sqlite = dbs.filter((d) => isSqliteTarget(d.url))
    if (sqlite.length === 0) {
      const parsed = yield* Effect.forEach(dbs, (d, i) =>
        Effect.map(parseShardUrl(d.url, i + 1), (s) => (d.id === undefined ? s : { ...s, id: d.id })))
      return { shards: yield* validateShards(parsed), sqlite: Option.none() }
    }
    if (dbs.length > 1) {
      return yield* Effect.fail(
        new ConfigInvalid({
          field: "db",
          reason: "a sqlite: database is the only one: it cannot be combined with other databases"
        })
      )
    }
    const only = sqlite[0]!
    if (only.id !== undefined && only.id !== 1) {
      return yield* Effect.fail(
        new ConfigInvalid({ field: "db", reason: `a sqlite: database is shard 1 (id ${only.id} given)` })
      )
    }
    return { shards: [], sqlite: Option.some(yield* parseSqliteTarget(only.url)) }
  })

/** --log-format, else GARIVINI_LOG_FORMAT, else the file's, else pretty on a terminal and logfmt otherwise. */
export const resolveLogFormat = (
  flag: Option.Option<LogFormat>,
  from?: Sources
): Effect.Effect<LogFormat, ConfigInvalid> =>
  Effect.suspend(() =>
    Effect.map(
      read(from ?? sources(undefined, {}), keys.logFormat, flag),
      Option.getOrElse((): LogFormat => (process.stdout.isTTY ? "pretty" : "logfmt"))
    )
  )

/** --log-level, else GARIVINI_LOG_LEVEL, else the file's `log.level`; none: the command's default. */
export const resolveLogLevel = (
  flag: Option.Option<LogLevelName> | undefined,
  from: Sources
): Effect.Effect<Option.Option<LogLevel.LogLevel>, ConfigInvalid> =>
  Effect.flatMap(
    flagLevel,
    (builtIn) => read(from, keys.logLevel, Option.orElse(Option.map(flag ?? Option.none(), levelNamed), () => builtIn))
  )

/** --metrics-listen, else GARIVINI_METRICS_LISTEN, else the file's `metrics.listen`; none: off. */
export const resolveMetricsListen = (
  flag: Option.Option<string> | undefined,
  from: Sources
): Effect.Effect<Option.Option<HostPort>, ConfigInvalid> =>
  Effect.flatMap(readOrUndefined(from, keys.metricsListen, flag ?? Option.none()), (text) =>
    text === undefined
      ? Effect.succeed(Option.none())
      : Effect.map(
        parseHostPort(text.trim(), { field: "metrics listen", defaultHost: "127.0.0.1", allowPortZero: true }),
        Option.some
      ))

/** The sources of a command: the environment and the file of `--config` (else GARIVINI_CONFIG), decoded. */
export const loadSources = (configFlag: Option.Option<string>): Effect.Effect<Sources, ConfigInvalid> =>
  Effect.gen(function*() {
    const path = yield* readOrUndefined(sources(undefined, {}), keys.config, configFlag)
    return sources(path, path === undefined ? {} : yield* loadFile(path))
  })

/** Resolves every setting: flag, else environment, else file, else default (src/cli/sources.ts). */
export const resolve = (
  flags: ConnectionFlags & Partial<RunnerFlags & ControllerFlags & InjectorFlags & StorageFlags>
): Effect.Effect<Settings, ConfigInvalid> =>
  Effect.gen(function*() {
    const from = yield* loadSources(flags.config)
    const get = <A>(setting: Key<A>, flag?: Option.Option<A>) => readOrUndefined(from, setting, flag)

    // Shards: --db, else GARIVINI_DB, else the file, else ./garivini.db (SQLite): the embedded
    // default, the same for `up`, `inject` and `consume` run from one directory.
    const flagDbs = (flags.db ?? []).map((url) => ({ url, id: undefined }))
    const givenDbs = yield* get(dbKey, flagDbs.length > 0 ? Option.some(flagDbs) : Option.none())
    const dbs = (givenDbs ?? [{ url: Redacted.make(DEFAULT_SQLITE_TARGET), id: undefined }]).map((d) => ({
      url: Redacted.value(d.url),
      id: d.id
    }))
    const { shards, sqlite } = yield* resolveDatabases(dbs)
    const givenServers = yield* get(
      keys.gearmand,
      flags.gearmand !== undefined && flags.gearmand.length > 0 ? Option.some(flags.gearmand) : Option.none()
    )
    const gearmand = yield* Effect.forEach(givenServers ?? [DEFAULT_GEARMAND], (s) => checkServer(s))

    const queueRunner: QueueRunnerOptions = {
      batchMaxSize: yield* get(keys.batchMaxSize, flags.batchMaxSize),
      batchMaxBytes: yield* get(keys.batchMaxBytes, flags.batchMaxBytes),
      batchRunSleep: duration(yield* get(keys.batchRunSleep, flags.batchRunSleep)),
      queueWatermarkDepth: yield* get(keys.queueWatermarkDepth, flags.queueWatermarkDepth),
      lease: duration(yield* get(keys.lease, flags.lease)),
      deferFor: duration(yield* get(keys.deferFor, flags.deferFor)),
      shardRetryMax: duration(yield* get(keys.shardRetryMax, flags.shardRetryMax))
    }
    const injector: InjectorOptions = {
      // The Injector's lease must match the QueueRunner's: it keeps the runner off injected jobs.
      lease: queueRunner.lease ?? duration(yield* get(keys.injectorLease)),
      queueWatermarkDepth: queueRunner.queueWatermarkDepth ?? (yield* get(keys.injectorWatermark)),
      concurrency: yield* get(keys.injectorConcurrency, flags.injectorConcurrency),
      maxRequestJobs: yield* get(keys.injectorMaxRequestJobs, flags.injectorMaxRequestJobs),
      maxRequestBytes: yield* get(keys.injectorMaxRequestBytes, flags.injectorMaxRequestBytes)
    }
    const controller: ControllerOptions = {
      concurrency: yield* get(keys.controllerConcurrency, flags.controllerConcurrency),
      timeout: duration(yield* get(keys.controllerTimeout, flags.controllerTimeout)),
      maxAttempts: yield* get(keys.controllerMaxAttempts, flags.controllerMaxAttempts)
    }
    if (
      controller.maxAttempts !== undefined &&
      !(Number.isSafeInteger(controller.maxAttempts) && controller.maxAttempts >= 1)
    ) {
      return yield* Effect.fail(
        new ConfigInvalid({
          field: "controller.maxAttempts",
          reason: `${controller.maxAttempts} is not an integer of at least 1`
        })
      )
    }
    // Checked here, for every command: a bad value stops the start with exit 2. The Injector
    // alone would take a lease under a second: its jobs stored due, run by a QueueRunner as well.
    yield* Either.mapLeft(
      queueRunnerSettings(queueRunner),
      (e) => new ConfigInvalid({ field: `queueRunner.${e.field}`, reason: e.reason, cause: e })
    )
    if (injector.lease !== undefined && Duration.toMillis(Duration.decode(injector.lease)) < 1000) {
      return yield* Effect.fail(new ConfigInvalid({ field: "injector.lease", reason: "must be at least 1 second" }))
    }
    const statementTimeout = yield* get(keys.statementTimeout, flags.statementTimeout)
    // Zero would close every connection at once; a NaN or a negative number is no duration.
    if (statementTimeout !== undefined && !(statementTimeout > 0 && Number.isFinite(statementTimeout))) {
      return yield* Effect.fail(
        new ConfigInvalid({
          field: "storage.statementTimeout",
          reason: `${statementTimeout} is not a positive number of seconds`
        })
      )
    }
    const flow = from.path === undefined ? { functions: [], schedules: [] } : yield* flowConfig(from.path)
    const logFormat = yield* resolveLogFormat(flags.logFormat, from)
    const logLevel = yield* resolveLogLevel(flags.logLevel, from)
    const metricsListen = yield* resolveMetricsListen(flags.metricsListen, from)
    const metricsInterval = yield* get(keys.metricsInterval)
    if (metricsInterval !== undefined && !(metricsInterval > 0 && Number.isFinite(metricsInterval))) {
      return yield* Effect.fail(
        new ConfigInvalid({
          field: "metrics.interval",
          reason: `${metricsInterval} is not a positive number of seconds`
        })
      )
    }
    return {
      shards,
      sqlite,
      dbGiven: givenDbs !== undefined,
      gearmand,
      gearmandGiven: givenServers !== undefined,
      queueRunner,
      injector,
      controller,
      statementTimeout: duration(statementTimeout),
      logFormat,
      logLevel,
      metricsListen,
      metricsInterval: duration(metricsInterval),
      flow
    }
  })

/** The file's flow-control sections, each entry checked (a bad rate or cron expression: exit 2). */
const flowConfig = (path: string): Effect.Effect<FlowConfig, ConfigInvalid> =>
  Effect.gen(function*() {
    const file = yield* loadFile(path)
    const functions: Array<{ readonly funcname: string; readonly patch: ControlPatch }> = []
    for (const [funcname, entry] of Object.entries(file.functions ?? {})) {
      const rate = entry.rate === undefined || entry.rate === null ? entry.rate : parseRate(entry.rate, entry.burst)
      if (typeof rate === "string") {
        return yield* new ConfigInvalid({ field: `functions.${funcname}.rate (in ${path})`, reason: rate })
      }
      const problem = entry.concurrency === undefined || entry.concurrency === null
        ? undefined
        : concurrencyProblem(entry.concurrency)
      if (problem !== undefined) {
        return yield* new ConfigInvalid({ field: `functions.${funcname}.concurrency (in ${path})`, reason: problem })
      }
      functions.push({
        funcname,
        patch: entry.concurrency === undefined
          ? { paused: entry.paused, rate }
          : { paused: entry.paused, rate, concurrency: entry.concurrency }
      })
    }
    const schedules: Array<ScheduleSpec> = []
    for (const [name, entry] of Object.entries(file.schedules ?? {})) {
      const spec: ScheduleSpec = {
        name,
        cron: entry.cron,
        funcname: entry.function,
        arg: entry.arg,
        timezone: entry.tz,
        missed: entry.missed
      }
      yield* Either.mapLeft(
        rowOf(spec, 0),
        (e) => new ConfigInvalid({ field: `schedules.${name} (in ${path})`, reason: e.reason, cause: e })
      )
      schedules.push(spec)
    }
    return { functions, schedules }
  })
