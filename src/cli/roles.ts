/**
 * The roles as long-running subcommands: `queue-runner`, `injector`, `controller`, and `run
 * --roles ...` for several in one process (as the original garivini_workers did). Each runs until
 * SIGINT/SIGTERM, then stops taking work, lets in-flight jobs finish and closes its connections.
 */
import { Command, Options } from "@effect/cli"
import { Effect, Either, Layer, Schedule } from "effect"
import { ConfigInvalid } from "../errors.js"
import { layer as gearmanLayer } from "../gearman/Gearman.js"
import type { Gearman } from "../gearman/Gearman.js"
import { Storage } from "../storage/Storage.js"
import * as Controller from "../roles/Controller.js"
import * as Injector from "../roles/Injector.js"
import * as QueueRunner from "../roles/QueueRunner.js"
import * as Scheduler from "../roles/Scheduler.js"
import * as Supervise from "../roles/supervise.js"
import type { RoleFailed, Supervision } from "../roles/supervise.js"
import { applyRoleHeapPolicy } from "./heap.js"
import {
  connectionOptions,
  controllerOptions,
  injectorOptions,
  metricsOptions,
  outputOptions,
  queueRunnerOptions
} from "./config.js"
import { exposition, withPollers } from "./metrics.js"
import type { FlowConfig, Settings } from "./config.js"
import { describeStorage, storageLayerFor, withSettings } from "./shared.js"

export type Role = "queue-runner" | "injector" | "controller"
export const ROLES: ReadonlyArray<Role> = ["queue-runner", "injector", "controller"]

/**
 * Settings these roles cannot run with together, refused before anything starts: an Injector
 * request bound out of range. (The Controller's timeout is not bound by the lease: its heartbeats
 * and the Injector's held lease keep a job's row while it waits.)
 */
export const checkRoleSettings = (
  _roles: ReadonlyArray<Role>,
  settings: Settings
): Either.Either<void, ConfigInvalid> => {
  // The QueueRunner's own settings are checked for every command, where they are read (config.ts).
  for (
    const [field, value] of [["injector max request jobs", settings.injector.maxRequestJobs], [
      "injector max request bytes",
      settings.injector.maxRequestBytes
    ]] as const
  ) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      return Either.left(new ConfigInvalid({ field, reason: `${value} is not a positive integer` }))
    }
  }
  return Either.right(undefined)
}

/**
 * The config file's functions and schedules, written when a QueueRunner starts (in the background:
 * a database down at start delays them, retried, and does not hold up the runner).
 */
const applyFlowConfig = (flow: FlowConfig): Layer.Layer<never, never, Storage> =>
  flow.functions.length === 0 && flow.schedules.length === 0 ? Layer.empty : Layer.scopedDiscard(
    Effect.gen(function*() {
      const storage = yield* Storage
      for (const { funcname, patch } of flow.functions) yield* storage.flow.setControl(funcname, patch)
      yield* Scheduler.define(flow.schedules)
      yield* Effect.logInfo(
        `flow control from the config file: ${flow.functions.length} function(s), ${flow.schedules.length} schedule(s)`
      )
    }).pipe(
      Effect.tapError((e) =>
        Effect.logWarning(`applying the config file's flow control failed, retrying: ${e.message}`)
      ),
      Effect.retry(Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("30 seconds")))),
      Effect.orDie,
      Effect.forkScoped
    )
  )

/** One role as a supervised Layer, over Gearman connections of its own. */
const roleLayer = (role: Role, settings: Settings): Layer.Layer<never, ConfigInvalid, Storage | Supervision> => {
  const body = (): Layer.Layer<never, ConfigInvalid, Storage | Gearman | Supervision> => {
    switch (role) {
      case "queue-runner":
        return QueueRunner.layer(settings.queueRunner).pipe(
          Layer.mapError((e) => new ConfigInvalid({ field: "queueRunner", reason: e.message, cause: e })),
          Layer.merge(applyFlowConfig(settings.flow))
        )
      case "injector":
        return Injector.layer(settings.injector)
      case "controller":
        return Controller.layer(settings.controller)
    }
  }
  // Each role's own client connections: a connection cut because of one role's packet (or
  // failure) does not fail another role's submits, e.g. the Controller's jobs in flight.
  return body().pipe(Layer.provide(gearmanLayer({ servers: settings.gearmand })))
}

/**
 * The roles as one Layer over Storage, each with its own Gearman connections, reporting to one
 * Supervision (provided, and kept in the output so the command can `join` it).
 */
export const rolesLayer = (
  roles: ReadonlyArray<Role>,
  settings: Settings
): Layer.Layer<Supervision, ConfigInvalid, Storage> =>
  roles.map((r) => roleLayer(r, settings)).reduce((a, b) => Layer.merge(a, b), Layer.empty).pipe(
    Layer.provideMerge(Supervise.layer)
  )

/**
 * Runs role layers over Storage until interrupted (exit 0) or until one gives up: `RoleFailed`,
 * which the command reports in one line with exit code 1.
 */
export const launchRoles = <E1, E2>(
  roles: Layer.Layer<Supervision, E1, Storage>,
  storage: Layer.Layer<Storage, E2>
): Effect.Effect<never, E1 | E2 | RoleFailed> => Effect.provide(Supervise.join, roles.pipe(Layer.provide(storage)))

/** Runs the roles until interrupted (with the roles' heap policy, see heap.ts). */
export const runRoles = (roles: ReadonlyArray<Role>, settings: Settings) =>
  Effect.gen(function*() {
    yield* checkRoleSettings(roles, settings)
    yield* applyRoleHeapPolicy
    yield* Effect.logInfo(
      `running ${roles.join(", ")} on ${describeStorage(settings)} and job server(s) ${settings.gearmand.join(", ")}`
    )
    // Only a process with a QueueRunner or an Injector reads the gauges (counts, job servers).
    const metrics = roles.includes("queue-runner") || roles.includes("injector")
      ? withPollers(settings.metricsListen, settings.metricsInterval).pipe(
        Layer.provide(gearmanLayer({ servers: settings.gearmand }))
      )
      : exposition(settings.metricsListen)
    return yield* launchRoles(Layer.merge(rolesLayer(roles, settings), metrics), storageLayerFor(settings))
  })

/**
 * The tuning flags each role reads. The Injector leases and defers its jobs as the QueueRunner
 * does (one --lease, one --queue-watermark-depth).
 */
export const roleOptions = {
  "queue-runner": queueRunnerOptions,
  injector: {
    lease: queueRunnerOptions.lease,
    queueWatermarkDepth: queueRunnerOptions.queueWatermarkDepth,
    ...injectorOptions
  },
  controller: { lease: queueRunnerOptions.lease, ...controllerOptions }
} as const

const allOptions = { ...connectionOptions, ...queueRunnerOptions, ...controllerOptions, ...injectorOptions }

const roleCommand = (role: Role, description: string) =>
  Command.make(
    role,
    { ...connectionOptions, ...roleOptions[role], ...metricsOptions, ...outputOptions },
    (flags) => withSettings(flags, (settings) => runRoles([role], settings))
  ).pipe(Command.withDescription(description))

export const queueRunnerCommand = roleCommand(
  "queue-runner",
  "Move due jobs from the database into gearmand in batches (throughput mode)"
)
export const injectorCommand = roleCommand(
  "injector",
  "Serve inject_jobs: store jobs sent by any Gearman client and dispatch them at once"
)
export const controllerCommand = roleCommand(
  "controller",
  "Serve run_queued_job: run injected jobs and complete or back off their rows"
)

/** `--roles queue-runner,injector,controller` */
export const parseRoles = (text: string): Either.Either<ReadonlyArray<Role>, ConfigInvalid> => {
  const names = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
  const unknown = names.filter((n) => !ROLES.includes(n as Role))
  if (names.length === 0 || unknown.length > 0) {
    return Either.left(
      new ConfigInvalid({
        field: "roles",
        reason: `${JSON.stringify(text)}: expected a comma list of ${ROLES.join(", ")}`
      })
    )
  }
  return Either.right([...new Set(names)].filter((n): n is Role => ROLES.includes(n as Role)))
}

export const runCommand = Command.make(
  "run",
  {
    ...allOptions,
    roles: Options.text("roles").pipe(
      Options.withDefault(ROLES.join(",")),
      Options.withDescription(`Comma list of roles to run in this process (default: ${ROLES.join(",")})`)
    ),
    ...metricsOptions,
    ...outputOptions
  },
  (flags) =>
    withSettings(flags, (settings) => Effect.flatMap(parseRoles(flags.roles), (roles) => runRoles(roles, settings)))
).pipe(Command.withDescription("Run several roles in one process"))
