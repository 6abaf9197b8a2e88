/**
 * `garivini gearmand`: the embedded job server on its own, for machines without Debian's
 * gearmand. Any Gearman client or worker (and gearadmin) can use it. It keeps queued jobs in
 * memory like gearmand: Garivini's database is what makes jobs durable.
 */
import { Command } from "@effect/cli"
import type { Option } from "effect"
import { Console, Effect, Layer, LogLevel, Schema } from "effect"
import { ConfigInvalid } from "../errors.js"
import { parseHostPort } from "../hostPort.js"
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_TOTAL_BYTES } from "../jobserver/JobServer.js"
import { DEFAULT_MAX_FRAME } from "../protocol/gearman.js"
import { DEFAULT_MAX_CONNECTIONS, listenOptions, serve } from "../jobserver/tcpServer.js"
import {
  configOption,
  loadSources,
  optionalInteger,
  optionalText,
  metricsOptions,
  outputOptions,
  resolveLogFormat,
  resolveLogLevel,
  resolveMetricsListen
} from "./config.js"
import { warnIfExposed } from "./exposure.js"
import { exposition } from "./metrics.js"
import { key, type Key, NumberText, readOrUndefined, type Sources, sources } from "./sources.js"
import { logLayer, reportFailure } from "./shared.js"

export const DEFAULT_LISTEN = "127.0.0.1:4730"
export const DEFAULT_MAX_QUEUE = 1_000_000

/** The embedded server's flags, shared with `garivini up`. */
export const embeddedServerOptions = {
  listen: optionalText(
    "listen",
    `Where the embedded job server listens, host:port, [v6]:port or port (env GARIVINI_LISTEN; file embedded.listen; default ${DEFAULT_LISTEN})`
  ),
  maxQueue: optionalInteger(
    "max-queue",
    `Queued + running jobs a function may hold; more submits get QUEUE_ERROR (env GARIVINI_MAX_QUEUE; default ${DEFAULT_MAX_QUEUE}; 0 = unlimited)`
  ),
  maxQueueBytes: optionalInteger(
    "max-queue-bytes",
    `Bytes of queued + running jobs a function may hold; more submits get QUEUE_ERROR (env GARIVINI_MAX_QUEUE_BYTES; default ${DEFAULT_MAX_QUEUE_BYTES}; 0 = unlimited)`
  ),
  maxTotalBytes: optionalInteger(
    "max-total-bytes",
    `Bytes of queued + running jobs of all functions together; more submits get QUEUE_ERROR (env GARIVINI_MAX_TOTAL_BYTES; default ${DEFAULT_MAX_TOTAL_BYTES}; 0 = unlimited)`
  ),
  maxPacket: optionalInteger(
    "max-packet",
    `Largest packet accepted, in bytes; a larger one closes that connection (env GARIVINI_MAX_PACKET; default ${DEFAULT_MAX_FRAME})`
  ),
  maxBacklog: optionalInteger(
    "max-backlog",
    "Bytes waiting to be sent to one peer before it is cut off (env GARIVINI_MAX_BACKLOG; default twice --max-packet)"
  ),
  maxInputBytes: optionalInteger(
    "max-input-bytes",
    `Bytes of unfinished packets held for all peers together; past it the peer holding the most is cut off (env GARIVINI_MAX_INPUT_BYTES; default ${DEFAULT_MAX_INPUT_BYTES})`
  ),
  maxConnections: optionalInteger(
    "max-connections",
    `Peers connected at once; more are refused on arrival (env GARIVINI_MAX_CONNECTIONS; default ${DEFAULT_MAX_CONNECTIONS})`
  )
}

export interface EmbeddedServerSettings {
  readonly host: string
  readonly port: number
  readonly maxQueue: number
  readonly maxQueueBytes: number
  readonly maxTotalBytes: number
  readonly maxFrame: number
  readonly maxBacklog: number
  readonly maxInputBytes: number
  readonly maxConnections: number
}

type EmbeddedFlags = {
  readonly [K in keyof typeof embeddedServerOptions]: Option.Option<K extends "listen" ? string : number>
}

/** The embedded server's keys: flag, else variable, else the file's `embedded` section, else default. */
export const embeddedKeys = {
  listen: key("GARIVINI_LISTEN", "embedded.listen", Schema.String),
  maxQueue: key("GARIVINI_MAX_QUEUE", "embedded.maxQueue", NumberText),
  maxQueueBytes: key("GARIVINI_MAX_QUEUE_BYTES", "embedded.maxQueueBytes", NumberText),
  maxTotalBytes: key("GARIVINI_MAX_TOTAL_BYTES", "embedded.maxTotalBytes", NumberText),
  maxPacket: key("GARIVINI_MAX_PACKET", "embedded.maxPacket", NumberText),
  maxBacklog: key("GARIVINI_MAX_BACKLOG", "embedded.maxBacklog", NumberText),
  maxInputBytes: key("GARIVINI_MAX_INPUT_BYTES", "embedded.maxInputBytes", NumberText),
  maxConnections: key("GARIVINI_MAX_CONNECTIONS", "embedded.maxConnections", NumberText)
} as const

/** Flags, then `GARIVINI_LISTEN` / `GARIVINI_MAX_*`, then the file's `embedded` section, then defaults. */
export const resolveEmbedded = (
  flags: EmbeddedFlags,
  given?: Sources
): Effect.Effect<EmbeddedServerSettings, ConfigInvalid> =>
  Effect.gen(function*() {
    // Read when run, not when built: the environment is the one at start.
    const from = given ?? sources(undefined, {})
    const count = (field: string, setting: Key<number>, flag: Option.Option<number>, fallback: number, min: number) =>
      Effect.flatMap(readOrUndefined(from, setting, flag), (given) => {
        const n = given ?? fallback
        return Number.isInteger(n) && n >= min
          ? Effect.succeed(n)
          : Effect.fail(new ConfigInvalid({ field, reason: `${JSON.stringify(String(n))} is not an integer ≥ ${min}` }))
      })
    const listenText = (yield* readOrUndefined(from, embeddedKeys.listen, flags.listen)) ?? DEFAULT_LISTEN
    const listen = yield* parseHostPort(listenText.trim(), listenOptions())
    const maxQueue = yield* count("max-queue", embeddedKeys.maxQueue, flags.maxQueue, DEFAULT_MAX_QUEUE, 0)
    const maxQueueBytes = yield* count(
      "max-queue-bytes",
      embeddedKeys.maxQueueBytes,
      flags.maxQueueBytes,
      DEFAULT_MAX_QUEUE_BYTES,
      0
    )
    const maxTotalBytes = yield* count(
      "max-total-bytes",
      embeddedKeys.maxTotalBytes,
      flags.maxTotalBytes,
      DEFAULT_MAX_TOTAL_BYTES,
      0
    )
    const maxFrame = yield* count("max-packet", embeddedKeys.maxPacket, flags.maxPacket, DEFAULT_MAX_FRAME, 1024)
    const maxBacklog = yield* count("max-backlog", embeddedKeys.maxBacklog, flags.maxBacklog, 2 * maxFrame, 1024)
    // At least one whole packet must fit, or no large job could ever arrive.
    const maxInputBytes = yield* count(
      "max-input-bytes",
      embeddedKeys.maxInputBytes,
      flags.maxInputBytes,
      Math.max(DEFAULT_MAX_INPUT_BYTES, maxFrame),
      maxFrame
    )
    const maxConnections = yield* count(
      "max-connections",
      embeddedKeys.maxConnections,
      flags.maxConnections,
      DEFAULT_MAX_CONNECTIONS,
      1
    )
    return { ...listen, maxQueue, maxQueueBytes, maxTotalBytes, maxFrame, maxBacklog, maxInputBytes, maxConnections }
  })

/** The embedded job server for the life of the scope; `uncounted` functions' ends are not counted. */
export const embeddedServer = (settings: EmbeddedServerSettings, uncounted: ReadonlyArray<string> = []) =>
  serve({ ...settings, uncounted })

export const gearmandCommand = Command.make("gearmand", {
  ...configOption,
  ...embeddedServerOptions,
  ...metricsOptions,
  ...outputOptions
}, (flags) =>
  reportFailure(Effect.gen(function*() {
    const from = yield* loadSources(flags.config)
    const settings = yield* resolveEmbedded(flags, from)
    const format = yield* resolveLogFormat(flags.logFormat, from)
    const level = yield* resolveLogLevel(flags.logLevel, from)
    const metricsListen = yield* resolveMetricsListen(flags.metricsListen, from)
    yield* Effect.scoped(Effect.gen(function*() {
      yield* Layer.buildWithScope(exposition(metricsListen), yield* Effect.scope)
      const server = yield* embeddedServer(settings)
      yield* Console.log(
        `garivini gearmand listening on ${server.address} (max queue ${settings.maxQueue || "unlimited"} jobs and ${
          settings.maxQueueBytes || "unlimited"
        } bytes per function, ${
          settings.maxTotalBytes || "unlimited"
        } bytes in all; max packet ${settings.maxFrame} bytes; at most ${settings.maxConnections} peers)`
      )
      yield* Effect.logInfo("job server up").pipe(Effect.annotateLogs({ role: "gearmand", address: server.address }))
      yield* warnIfExposed("the job server", server.host, server.address).pipe(
        Effect.annotateLogs({ role: "gearmand" })
      )
      return yield* Effect.never
    })).pipe(Effect.provide(logLayer(format, level, LogLevel.Info)))
  }))).pipe(
    Command.withDescription("An embedded Gearman job server (binary and admin protocols) for machines without gearmand")
  )
