/**
 * `garivini up`: the whole system in one process on one machine — the embedded job server, a
 * QueueRunner, an Injector and a Controller — over the configured storage (by default the SQLite
 * file ./garivini.db; the schema is applied first). Job servers given with --gearmand replace the embedded one. It prints where
 * clients and workers connect and, on a terminal, a live line of counts.
 */
import { Command } from "@effect/cli"
import { Console, Duration, Effect, Either, Layer, Option, Schedule } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import { formatHostPort } from "../hostPort.js"
import { DEFAULT_MAX_FRAME } from "../protocol/gearman.js"
import type { RunningServer } from "../jobserver/tcpServer.js"
import { INJECT_FUNCTION } from "../roles/Injector.js"
import { CONTROLLER_FUNCTION } from "../roles/QueueRunner.js"
import * as Supervise from "../roles/supervise.js"
import { Storage } from "../storage/Storage.js"
import {
  connectionOptions,
  controllerOptions,
  injectorOptions,
  loadSources,
  metricsOptions,
  optionalText,
  outputOptions,
  queueRunnerOptions,
  webConsoleOptions
} from "./config.js"
import type { Settings } from "./config.js"
import { warnIfExposed } from "./exposure.js"
import { embeddedServer, embeddedServerOptions, resolveEmbedded } from "./gearmand.js"
import { applyRoleHeapPolicy } from "./heap.js"
import { withPollers } from "./metrics.js"
import { checkRoleSettings, ROLES, rolesLayer } from "./roles.js"
import { describeStorage, migrateStorage, servicesLayer, withSettings } from "./shared.js"
import { DEFAULT_WEB_LISTEN } from "../web/defaults.js"
import { resolveWeb, startWeb } from "./web.js"

/** Functions of Garivini itself: not counted as users' jobs. */
export const INTERNAL_FUNCTIONS: ReadonlyArray<string> = [INJECT_FUNCTION, CONTROLLER_FUNCTION]
const internal = new Set(INTERNAL_FUNCTIONS)

export interface UpCounts {
  readonly due: number
  readonly scheduled: number
  readonly running: number
  readonly done: number | undefined
  readonly failed: number | undefined
}

/**
 * due / scheduled from the database, running from the job servers' status; done / failed as the
 * embedded job server saw them end since it started (unknown with external job servers).
 */
export const upCounts = (server: Option.Option<RunningServer>) =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const gearman = yield* Gearman
    const counts = yield* Effect.either(storage.counts())
    const depths = yield* Effect.either(gearman.queueDepths())
    const rows = Either.getOrElse(counts, () => [])
    let done: number | undefined
    let failed: number | undefined
    if (Option.isSome(server)) {
      const ended = server.value.core.ended()
      done = ended.completed
      failed = ended.failed
    }
    let running = 0
    if (Either.isRight(depths)) { for (const [name, s] of depths.right) if (!internal.has(name)) running += s.running }
    const result: UpCounts = {
      due: rows.reduce((n, r) => n + r.due, 0),
      scheduled: rows.reduce((n, r) => n + r.scheduled + r.retrying + r.dispatched + r.running + r.never, 0),
      running,
      done,
      failed
    }
    return result
  })

const formatCounts = (c: UpCounts) =>
  `due ${c.due}  scheduled ${c.scheduled}  running ${c.running}` +
  (c.done === undefined ? "" : `  done ${c.done}  failed ${c.failed}`)

/** The settings `up` runs with: the embedded job server's address unless servers were given. */
const withServer = (settings: Settings, server: Option.Option<RunningServer>): Settings =>
  Option.match(server, {
    onNone: () => settings,
    // 0.0.0.0 / :: accept on every interface; this process connects over loopback.
    onSome: (s) => ({
      ...settings,
      gearmand: [formatHostPort({ host: s.host === "0.0.0.0" || s.host === "::" ? "127.0.0.1" : s.host, port: s.port })]
    })
  })

export const upCommand = Command.make("up", {
  ...connectionOptions,
  ...queueRunnerOptions,
  ...controllerOptions,
  ...injectorOptions,
  ...embeddedServerOptions,
  ...metricsOptions,
  webListen: optionalText(
    "web-listen",
    `Where the web console listens, host:port, or off (env GARIVINI_WEB_LISTEN; file web.listen; default ${DEFAULT_WEB_LISTEN})`
  ),
  ...webConsoleOptions,
  ...outputOptions
}, (flags) =>
  withSettings(flags, (configured) =>
    Effect.scoped(Effect.gen(function*() {
      yield* checkRoleSettings(ROLES, configured)
      const from = yield* loadSources(flags.config)
      const web = yield* resolveWeb({ ...flags, listen: flags.webListen }, from)
      const embedded = configured.gearmandGiven ? Option.none() : Option.some(yield* resolveEmbedded(flags, from))
      const server = Option.isSome(embedded)
        ? Option.some(yield* embeddedServer(embedded.value, INTERNAL_FUNCTIONS))
        : Option.none<RunningServer>()
      if (Option.isSome(server)) {
        yield* warnIfExposed("the embedded job server", server.value.host, server.value.address).pipe(
          Effect.annotateLogs({ role: "up" })
        )
      }
      const served = withServer(configured, server)
      // Jobs the embedded server would refuse (the connection cut) are parked, not sent.
      const maxPacket = Option.isSome(embedded) ? Math.min(embedded.value.maxFrame, DEFAULT_MAX_FRAME) : undefined
      const settings: Settings = {
        ...served,
        queueRunner: { ...served.queueRunner, maxPacket },
        injector: { ...served.injector, maxPacket }
      }
      yield* migrateStorage(settings)
      yield* applyRoleHeapPolicy
      const context = yield* Layer.build(
        Layer.merge(rolesLayer(ROLES, settings), withPollers(settings.metricsListen, settings.metricsInterval)).pipe(
          Layer.provideMerge(servicesLayer(settings))
        )
      )

      const console_ = yield* startWeb(web, settings).pipe(Effect.provide(context))
      const where = Option.match(server, {
        onNone: () => `job servers ${settings.gearmand.join(", ")}`,
        onSome: (s) => `job server ${s.address} (embedded)`
      })
      yield* Console.log(`garivini up: ${ROLES.join(", ")}`)
      yield* Console.log(`  clients and workers connect to ${where}`)
      yield* Console.log(`  jobs are stored in ${describeStorage(settings)}`)
      if (Option.isSome(console_)) yield* Console.log(`  web console at ${console_.value.url}`)
      yield* Console.log(`  try: garivini inject --count 1000 --function foo   and   garivini consume --function foo`)
      yield* Effect.logInfo("up").pipe(Effect.annotateLogs({ role: "up", gearmand: settings.gearmand.join(",") }))

      const tty = process.stdout.isTTY === true
      const report = Effect.flatMap(upCounts(server), (c) =>
        tty
          ? Effect.sync(() => void process.stdout.write(`\r\x1b[2K${formatCounts(c)}`))
          : Effect.logInfo(formatCounts(c)).pipe(Effect.annotateLogs({ role: "up" })))
      yield* Effect.addFinalizer(() => tty ? Effect.sync(() => void process.stdout.write("\n")) : Effect.void)
      yield* report.pipe(
        Effect.repeat(Schedule.spaced(tty ? Duration.seconds(1) : Duration.minutes(1))),
        Effect.provide(context),
        Effect.forkScoped
      )
      // Until interrupted (exit 0), or until a role gives up (RoleFailed: exit 1).
      return yield* Effect.provide(Supervise.join, context)
    })))).pipe(
    Command.withDescription(
      "The whole system in one process: an embedded job server, a QueueRunner, an Injector and a Controller"
    )
  )
