/**
 * The command line's configuration, in this order of precedence: flags, environment
 * (`GARIVINI_*`), a config file (`--config`, YAML or JSON). Every source is decoded with Schema;
 * a bad value fails with `ConfigInvalid` naming the field. Passwords are `Redacted` as soon as
 * they are read.
 */
import { readFileSync } from "node:fs"
import { Options } from "@effect/cli"
import { Duration, Effect, Either, Option, ParseResult, Redacted, Schema } from "effect"
import { parse as parseYaml } from "yaml"
import { DEFAULT_SQLITE_TARGET, isSqliteTarget, parseShardUrl, parseSqliteTarget, validateShards } from "../config.js"
import type { ShardConfig } from "../config.js"
import { ConfigInvalid } from "../errors.js"
import { parseHostPort } from "../hostPort.js"
import type { ControllerOptions } from "../roles/Controller.js"
import * as Defaults from "../roles/defaults.js"
import type { InjectorOptions } from "../roles/Injector.js"
import { settings as queueRunnerSettings, type QueueRunnerOptions } from "../roles/QueueRunner.js"

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
  readonly logFormat: LogFormat
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
    deferFor: Schema.optional(Seconds)
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
    timeout: Schema.optional(Seconds)
  })),
  log: Schema.optional(Schema.Struct({
    format: Schema.optional(Schema.Literal("pretty", "json", "logfmt"))
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

const text = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))
const integer = (name: string, description: string) =>
  Options.integer(name).pipe(Options.optional, Options.withDescription(description))
const seconds = (name: string, description: string) =>
  Options.float(name).pipe(Options.optional, Options.withDescription(description))

/** Where the jobs are: shards and job servers (every command that talks to them). */
export const connectionOptions = {
  config: text(
    "config",
    "A YAML or JSON file with settings flags express badly (several shards, job servers, per-role options); env GARIVINI_CONFIG"
  ),
  db: Options.text("db").pipe(
    Options.repeated,
    // Wrapped at once (Options.redacted rejects repeated values in @effect/cli 0.77).
    Options.map((urls) => urls.map((url) => Redacted.make(url))),
    Options.withDescription(
      "A shard as mysql://user:pass@host:port/db[?id=N], repeated for several, or one SQLite file as sqlite:<path> (env GARIVINI_DB, comma-separated; default sqlite:./garivini.db)"
    )
  ),
  gearmand: Options.text("gearmand").pipe(
    Options.repeated,
    Options.withDescription(
      `A job server as host:port; repeat for several (env GARIVINI_GEARMAND; default ${DEFAULT_GEARMAND})`
    )
  ),
  logFormat: Options.choice("log-format", ["pretty", "json", "logfmt"]).pipe(
    Options.optional,
    Options.withDescription("Log lines as pretty text (default on a terminal), JSON or logfmt; env GARIVINI_LOG_FORMAT")
  )
}

export const queueRunnerOptions = {
  batchMaxSize: integer("batch-max-size", "Largest batch claimed per shard and round (default 1000, at least 50)"),
  batchMaxBytes: integer(
    "batch-max-bytes",
    "Bytes of args claimed per shard and round, at most; a larger job goes alone (default 67108864)"
  ),
  batchRunSleep: seconds("batch-run-sleep", "Seconds between rounds, at most (default 1)"),
  queueWatermarkDepth: integer(
    "queue-watermark-depth",
    "Defer jobs of functions with more queued in gearmand (default 4000; 0 disables)"
  ),
  lease: seconds("lease", "Seconds a dispatched job is leased before it is dispatched again (default 1000)"),
  deferFor: seconds(
    "defer-for",
    "Seconds the overflow of a round that crossed the watermark waits (default 0; the original waited 60)"
  )
}

export const controllerOptions = {
  controllerConcurrency: integer("controller-concurrency", "Jobs a Controller runs at once (default 64)"),
  controllerTimeout: seconds("controller-timeout", "Seconds a Controller waits for a job (default 900)")
}

export const injectorOptions = {
  injectorConcurrency: integer("injector-concurrency", "Injects handled at once (default 32)"),
  injectorMaxRequestJobs: integer(
    "injector-max-request-jobs",
    "Jobs one inject_jobs request may carry; more are rejected (default 10000)"
  ),
  injectorMaxRequestBytes: integer(
    "injector-max-request-bytes",
    "Bytes one inject_jobs request may have; more are rejected (default 33554432)"
  )
}

type ConnectionFlags = {
  readonly config: Option.Option<string>
  readonly db: ReadonlyArray<Redacted.Redacted<string>>
  readonly gearmand: ReadonlyArray<string>
  readonly logFormat: Option.Option<LogFormat>
}
type RunnerFlags = { readonly [K in keyof typeof queueRunnerOptions]: Option.Option<number> }
type ControllerFlags = { readonly [K in keyof typeof controllerOptions]: Option.Option<number> }
type InjectorFlags = { readonly [K in keyof typeof injectorOptions]: Option.Option<number> }

// -- resolution -------------------------------------------------------------------------------

/** An environment variable, or undefined when it is unset or blank. */
export const env = (name: string): string | undefined => {
  const value = process.env[name]
  return value === undefined || value.trim() === "" ? undefined : value
}
const list = (value: string): ReadonlyArray<string> => value.split(/[\s,]+/).filter((s) => s !== "")

const firstOf = <A>(...candidates: ReadonlyArray<A | undefined>): A | undefined =>
  candidates.find((c) => c !== undefined)

const envNumber = (name: string): Either.Either<number | undefined, ConfigInvalid> => {
  const value = env(name)
  if (value === undefined) return Either.right(undefined)
  const n = Number(value)
  return Number.isFinite(n)
    ? Either.right(n)
    : Either.left(new ConfigInvalid({ field: name, reason: `${JSON.stringify(value)} is not a number` }))
}

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
  fromFile?: LogFormat
): Either.Either<LogFormat, ConfigInvalid> => {
  const envFormat = env("GARIVINI_LOG_FORMAT")
  if (envFormat !== undefined && !isLogFormat(envFormat)) {
    return Either.left(
      new ConfigInvalid({
        field: "GARIVINI_LOG_FORMAT",
        reason: `${JSON.stringify(envFormat)} is not pretty, json or logfmt`
      })
    )
  }
  return Either.right(
    firstOf<LogFormat>(Option.getOrUndefined(flag), envFormat, fromFile) ?? (process.stdout.isTTY ? "pretty" : "logfmt")
  )
}

/** Resolves every setting from flags, environment and file, in that order. */
export const resolve = (
  flags: ConnectionFlags & Partial<RunnerFlags & ControllerFlags & InjectorFlags>
): Effect.Effect<Settings, ConfigInvalid> =>
  Effect.gen(function*() {
    const path = Option.getOrUndefined(flags.config) ?? env("GARIVINI_CONFIG")
    const file: FileConfig = path === undefined ? {} : yield* loadFile(path)

    // Shards: --db, else GARIVINI_DB, else the file, else ./garivini.db (SQLite): the embedded
    // default, the same for `up`, `inject` and `consume` run from one directory.
    const flagDbs = flags.db.map((u) => ({ url: Redacted.value(u), id: undefined as number | undefined }))
    const envDbs = Option.fromNullable(env("GARIVINI_DB")).pipe(
      Option.map((v) => list(v).map((url) => ({ url, id: undefined as number | undefined })))
    )
    const fileDbs = file.db?.map((d) => typeof d === "string" ? { url: d, id: undefined } : { url: d.url, id: d.id })
    const givenDbs = flagDbs.length > 0 ? flagDbs : Option.getOrUndefined(envDbs) ?? fileDbs
    const dbs = givenDbs ?? [{ url: DEFAULT_SQLITE_TARGET, id: undefined }]
    const { shards, sqlite } = yield* resolveDatabases(dbs)
    const givenServers = flags.gearmand.length > 0
      ? flags.gearmand
      : firstOf(Option.getOrUndefined(Option.map(Option.fromNullable(env("GARIVINI_GEARMAND")), list)), file.gearmand)
    const gearmand = yield* Effect.forEach(givenServers ?? [DEFAULT_GEARMAND], (s) => checkServer(s))

    const num = (flag: Option.Option<number> | undefined, envName: string, fromFile: number | undefined) =>
      Effect.map(envNumber(envName), (fromEnv) =>
        firstOf(flag === undefined ? undefined : Option.getOrUndefined(flag), fromEnv, fromFile))

    const qr = file.queueRunner ?? {}
    const queueRunner: QueueRunnerOptions = {
      batchMaxSize: yield* num(flags.batchMaxSize, "GARIVINI_BATCH_MAX_SIZE", qr.batchMaxSize),
      batchMaxBytes: yield* num(flags.batchMaxBytes, "GARIVINI_BATCH_MAX_BYTES", qr.batchMaxBytes),
      batchRunSleep: duration(yield* num(flags.batchRunSleep, "GARIVINI_BATCH_RUN_SLEEP", qr.batchRunSleep)),
      queueWatermarkDepth: yield* num(
        flags.queueWatermarkDepth,
        "GARIVINI_QUEUE_WATERMARK_DEPTH",
        qr.queueWatermarkDepth
      ),
      lease: duration(yield* num(flags.lease, "GARIVINI_LEASE", qr.lease)),
      deferFor: duration(yield* num(flags.deferFor, "GARIVINI_DEFER_FOR", qr.deferFor))
    }
    const inj = file.injector ?? {}
    const injector: InjectorOptions = {
      // The Injector's lease must match the QueueRunner's: it keeps the runner off injected jobs.
      lease: queueRunner.lease ?? duration(inj.lease),
      queueWatermarkDepth: queueRunner.queueWatermarkDepth ?? inj.queueWatermarkDepth,
      concurrency: yield* num(flags.injectorConcurrency, "GARIVINI_INJECTOR_CONCURRENCY", inj.concurrency),
      maxRequestJobs: yield* num(
        flags.injectorMaxRequestJobs,
        "GARIVINI_INJECTOR_MAX_REQUEST_JOBS",
        inj.maxRequestJobs
      ),
      maxRequestBytes: yield* num(
        flags.injectorMaxRequestBytes,
        "GARIVINI_INJECTOR_MAX_REQUEST_BYTES",
        inj.maxRequestBytes
      )
    }
    const ctl = file.controller ?? {}
    const controller: ControllerOptions = {
      concurrency: yield* num(flags.controllerConcurrency, "GARIVINI_CONTROLLER_CONCURRENCY", ctl.concurrency),
      timeout: duration(yield* num(flags.controllerTimeout, "GARIVINI_CONTROLLER_TIMEOUT", ctl.timeout))
    }
    // Checked here, for every command: a bad value stops the start with exit 2. The Injector
    // alone would take a lease under a second: its jobs stored due, run by a QueueRunner as well.
    yield* Either.mapLeft(
      queueRunnerSettings(queueRunner),
      (e) =>
        new ConfigInvalid({ field: `queueRunner.${e.field}`, reason: e.reason, cause: e })
    )
    if (injector.lease !== undefined && Duration.toMillis(Duration.decode(injector.lease)) < 1000) {
      return yield* Effect.fail(new ConfigInvalid({ field: "injector.lease", reason: "must be at least 1 second" }))
    }
    const logFormat = yield* resolveLogFormat(flags.logFormat, file.log?.format)
    return {
      shards,
      sqlite,
      dbGiven: givenDbs !== undefined,
      gearmand,
      gearmandGiven: givenServers !== undefined,
      queueRunner,
      injector,
      controller,
      logFormat
    }
  })
