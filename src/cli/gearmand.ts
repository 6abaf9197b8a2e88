/**
 * `garivini gearmand`: the embedded job server on its own, for machines without Debian's
 * gearmand. Any Gearman client or worker (and gearadmin) can use it. It keeps queued jobs in
 * memory like gearmand: Garivini's database is what makes jobs durable.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either, Option } from "effect"
import { ConfigInvalid } from "../errors.js"
import { parseHostPort } from "../hostPort.js"
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_TOTAL_BYTES } from "../gearman/JobServer.js"
import { DEFAULT_MAX_FRAME } from "../gearman/protocol.js"
import { DEFAULT_MAX_CONNECTIONS, listenOptions, serve } from "../gearman/tcpServer.js"
import { connectionOptions, env, resolveLogFormat } from "./config.js"
import { warnIfExposed } from "./exposure.js"
import { loggerLayer, reportFailure } from "./shared.js"

export const DEFAULT_LISTEN = "127.0.0.1:4730"
export const DEFAULT_MAX_QUEUE = 1_000_000

/** The embedded server's flags, shared with `garivini up`. */
export const embeddedServerOptions = {
  listen: Options.text("listen").pipe(
    Options.optional,
    Options.withDescription(
      `Where the embedded job server listens, host:port or port (env GARIVINI_LISTEN; default ${DEFAULT_LISTEN})`
    )
  ),
  maxQueue: Options.integer("max-queue").pipe(
    Options.optional,
    Options.withDescription(
      `Queued + running jobs a function may hold; more submits get QUEUE_ERROR (env GARIVINI_MAX_QUEUE; default ${DEFAULT_MAX_QUEUE}; 0 = unlimited)`
    )
  ),
  maxQueueBytes: Options.integer("max-queue-bytes").pipe(
    Options.optional,
    Options.withDescription(
      `Bytes of queued + running jobs a function may hold; more submits get QUEUE_ERROR (env GARIVINI_MAX_QUEUE_BYTES; default ${DEFAULT_MAX_QUEUE_BYTES}; 0 = unlimited)`
    )
  ),
  maxTotalBytes: Options.integer("max-total-bytes").pipe(
    Options.optional,
    Options.withDescription(
      `Bytes of queued + running jobs of all functions together; more submits get QUEUE_ERROR (env GARIVINI_MAX_TOTAL_BYTES; default ${DEFAULT_MAX_TOTAL_BYTES}; 0 = unlimited)`
    )
  ),
  maxPacket: Options.integer("max-packet").pipe(
    Options.optional,
    Options.withDescription(
      `Largest packet accepted, in bytes; a larger one closes that connection (env GARIVINI_MAX_PACKET; default ${DEFAULT_MAX_FRAME})`
    )
  ),
  maxBacklog: Options.integer("max-backlog").pipe(
    Options.optional,
    Options.withDescription(
      "Bytes waiting to be sent to one peer before it is cut off (env GARIVINI_MAX_BACKLOG; default twice --max-packet)"
    )
  ),
  maxInputBytes: Options.integer("max-input-bytes").pipe(
    Options.optional,
    Options.withDescription(
      `Bytes of unfinished packets held for all peers together; past it the peer holding the most is cut off (env GARIVINI_MAX_INPUT_BYTES; default ${DEFAULT_MAX_INPUT_BYTES})`
    )
  ),
  maxConnections: Options.integer("max-connections").pipe(
    Options.optional,
    Options.withDescription(
      `Peers connected at once; more are refused on arrival (env GARIVINI_MAX_CONNECTIONS; default ${DEFAULT_MAX_CONNECTIONS})`
    )
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

const count = (field: string, flag: Option.Option<number>, envName: string, fallback: number, min: number) => {
  const text = Option.isSome(flag) ? String(flag.value) : env(envName) ?? String(fallback)
  const n = Number(text)
  return Number.isInteger(n) && n >= min
    ? Either.right(n)
    : Either.left(new ConfigInvalid({ field, reason: `${JSON.stringify(text)} is not an integer ≥ ${min}` }))
}

/** Flags, then `GARIVINI_LISTEN` / `GARIVINI_MAX_*`, then defaults. */
export const resolveEmbedded = (flags: EmbeddedFlags): Effect.Effect<EmbeddedServerSettings, ConfigInvalid> =>
  Effect.gen(function*() {
    const listenText = Option.getOrUndefined(flags.listen) ?? env("GARIVINI_LISTEN") ?? DEFAULT_LISTEN
    const listen = yield* parseHostPort(listenText.trim(), listenOptions())
    const maxQueue = yield* count("max-queue", flags.maxQueue, "GARIVINI_MAX_QUEUE", DEFAULT_MAX_QUEUE, 0)
    const maxQueueBytes = yield* count(
      "max-queue-bytes",
      flags.maxQueueBytes,
      "GARIVINI_MAX_QUEUE_BYTES",
      DEFAULT_MAX_QUEUE_BYTES,
      0
    )
    const maxTotalBytes = yield* count(
      "max-total-bytes",
      flags.maxTotalBytes,
      "GARIVINI_MAX_TOTAL_BYTES",
      DEFAULT_MAX_TOTAL_BYTES,
      0
    )
    const maxFrame = yield* count("max-packet", flags.maxPacket, "GARIVINI_MAX_PACKET", DEFAULT_MAX_FRAME, 1024)
    const maxBacklog = yield* count("max-backlog", flags.maxBacklog, "GARIVINI_MAX_BACKLOG", 2 * maxFrame, 1024)
    // At least one whole packet must fit, or no large job could ever arrive.
    const maxInputBytes = yield* count(
      "max-input-bytes",
      flags.maxInputBytes,
      "GARIVINI_MAX_INPUT_BYTES",
      Math.max(DEFAULT_MAX_INPUT_BYTES, maxFrame),
      maxFrame
    )
    const maxConnections = yield* count(
      "max-connections",
      flags.maxConnections,
      "GARIVINI_MAX_CONNECTIONS",
      DEFAULT_MAX_CONNECTIONS,
      1
    )
    return { ...listen, maxQueue, maxQueueBytes, maxTotalBytes, maxFrame, maxBacklog, maxInputBytes, maxConnections }
  })

/** The embedded job server for the life of the scope; `uncounted` functions' ends are not counted. */
export const embeddedServer = (settings: EmbeddedServerSettings, uncounted: ReadonlyArray<string> = []) =>
  serve({ ...settings, uncounted })

export const gearmandCommand = Command.make("gearmand", {
  ...embeddedServerOptions,
  logFormat: connectionOptions.logFormat
}, (flags) =>
  reportFailure(Effect.gen(function*() {
    const settings = yield* resolveEmbedded(flags)
    const format = yield* resolveLogFormat(flags.logFormat)
    yield* Effect.scoped(Effect.gen(function*() {
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
    })).pipe(Effect.provide(loggerLayer(format)))
  }))).pipe(
    Command.withDescription("An embedded Gearman job server (binary and admin protocols) for machines without gearmand")
  )
