/**
 * `garivini web`: the web console alone, over the configured storage and job servers (one
 * process can watch every shard and job server of a deployment). `garivini up` serves the same
 * console by default (its --web-listen). Options resolved here: where it listens (flag, env
 * GARIVINI_WEB_LISTEN, file `web.listen`, default 127.0.0.1:4780), the token (flag or env
 * GARIVINI_WEB_TOKEN, Redacted), read-only.
 */
import { Command } from "@effect/cli"
import { Config, Console, Effect, Option, Redacted, Schema } from "effect"
import { ConfigInvalid } from "../errors.js"
import { parseHostPort } from "../hostPort.js"
import type { HostPort } from "../hostPort.js"
import { listenOptions } from "../jobserver/tcpServer.js"
import { DEFAULT_WEB_LISTEN } from "../web/defaults.js"
import type { RunningConsole } from "../web/WebConsole.js"
import {
  connectionOptions,
  loadSources,
  optionalText,
  outputOptions,
  queueRunnerOptions,
  webConsoleOptions
} from "./config.js"
import type { Settings } from "./config.js"
import { key, readOrUndefined } from "./sources.js"
import type { Sources } from "./sources.js"
import { servicesLayer, withSettings } from "./shared.js"

const listenKey = key("GARIVINI_WEB_LISTEN", "web.listen", Schema.String)

export interface WebSettings {
  /** None: the console is off (`up --web-listen off`). */
  readonly listen: Option.Option<HostPort>
  readonly token: Option.Option<Redacted.Redacted<string>>
  readonly readOnly: boolean
  /** Whether the address was given (flag, env, file) rather than defaulted. */
  readonly given: boolean
  /** The Driver's management console, for the Driver page (`garivini web --driver-console`). */
  readonly driverConsole: Option.Option<HostPort>
}

export interface WebFlags {
  readonly listen: Option.Option<string>
  readonly webToken: Option.Option<Redacted.Redacted<string>>
  readonly readOnly: boolean
  readonly driverConsole?: Option.Option<string> | undefined
}

/** Where and how the console runs: flag, else environment, else file, else the default. */
export const resolveWeb = (flags: WebFlags, from: Sources): Effect.Effect<WebSettings, ConfigInvalid> =>
  Effect.gen(function*() {
    const given = yield* readOrUndefined(from, listenKey, flags.listen)
    const text = (given ?? DEFAULT_WEB_LISTEN).trim()
    const listen = text === "off" ? Option.none() : Option.some(yield* parseHostPort(text, listenOptions()))
    const token = Option.isSome(flags.webToken)
      ? flags.webToken
      : yield* Config.option(Config.redacted("GARIVINI_WEB_TOKEN")).pipe(
        // A blank variable is unset, as every GARIVINI_* one.
        Effect.map(Option.filter((t) => Redacted.value(t).trim() !== "")),
        Effect.orElseSucceed(() => Option.none<Redacted.Redacted<string>>())
      )
    const driverText = Option.getOrUndefined(flags.driverConsole ?? Option.none())
    const driverConsole = driverText === undefined
      ? Option.none<HostPort>()
      : Option.some(yield* parseHostPort(driverText.trim(), { field: "driver-console" }))
    return { listen, token, readOnly: flags.readOnly, given: given !== undefined, driverConsole }
  })

/**
 * Serves the console in the current scope when it is on; none when it is off. At the default
 * address only (`up` without --web-listen), a port already taken — another `up` on this machine —
 * is a warning, not a failure: the job system matters more than its console.
 */
export const startWeb = (web: WebSettings, settings: Settings) =>
  Option.match(web.listen, {
    onNone: () => Effect.succeed(Option.none<RunningConsole>()),
    onSome: (listen) =>
      // Loaded when started: the HTTP server's modules would add seconds to every command's start.
      Effect.promise(() => import("../web/WebConsole.js")).pipe(
        Effect.flatMap(({ serve }) =>
          serve({
            host: listen.host,
            port: listen.port,
            token: web.token,
            readOnly: web.readOnly,
            lease: settings.queueRunner.lease,
            driverConsole: Option.getOrUndefined(web.driverConsole)
          })
        ),
        Effect.map(Option.some),
        Effect.catchTag("WebListenFailed", (e) =>
          web.given
            ? Effect.fail(e)
            : Effect.as(
              Effect.logWarning(
                `${e.message}; the web console is off (--web-listen HOST:PORT to choose another address)`
              ),
              Option.none<RunningConsole>()
            ))
      )
  })

/** `--driver-console`, on `web` and `up`: the Driver page. */
export const driverConsoleOption = optionalText(
  "driver-console",
  "The Driver's management console, host:port (its console_port): adds a Driver page listing its jobs, with min/max to set"
)

export const webCommand = Command.make("web", {
  ...connectionOptions,
  lease: queueRunnerOptions.lease,
  listen: optionalText(
    "listen",
    `Where the web console listens, host:port, [v6]:port or port (env GARIVINI_WEB_LISTEN; file web.listen; default ${DEFAULT_WEB_LISTEN})`
  ),
  ...webConsoleOptions,
  driverConsole: driverConsoleOption,
  ...outputOptions
}, (flags) =>
  withSettings(flags, (settings) =>
    Effect.scoped(Effect.gen(function*() {
      const web = yield* resolveWeb(flags, yield* loadSources(flags.config))
      if (Option.isNone(web.listen)) {
        return yield* new ConfigInvalid({ field: "listen", reason: "off leaves garivini web nothing to do" })
      }
      const running = yield* startWeb(web, settings)
      if (Option.isSome(running)) yield* Console.log(`garivini web: ${running.value.url}`)
      return yield* Effect.never
    })).pipe(Effect.provide(servicesLayer(settings))))).pipe(
    Command.withDescription("The web console: every queue and job, with retry and delete, in a browser")
  )
