/**
 * The `garivini` command. Exit codes: 0 ok, 1 failure at run time, 2 bad usage or configuration.
 * SIGINT/SIGTERM interrupt the command: roles stop taking work, let in-flight jobs finish (30 s
 * at most), release their connections and exit 0; a second signal exits at once.
 */
import { Command, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Logger } from "effect"
import { consumeCommand } from "./consume.js"
import { demoCommand } from "./demo.js"
import { driverCommand } from "./driver.js"
import { functionsCommand, schedulesCommand } from "./flow.js"
import { gearmandCommand } from "./gearmand.js"
import { injectCommand } from "./inject.js"
import { jobsCommand } from "./jobs.js"
import { levelNotGiven } from "./logging.js"
import * as Tracing from "../tracing/Otlp.js"
import { migrateCommand } from "./migrate.js"
import { controllerCommand, injectorCommand, queueRunnerCommand, runCommand } from "./roles.js"
import { schemaCommand } from "./schema.js"
import { statusCommand } from "./status.js"
import { upCommand } from "./up.js"
import { webCommand } from "./web.js"

const garivini = Command.make("garivini").pipe(
  Command.withDescription(
    "A durable job layer for Gearman: jobs stored in SQLite (./garivini.db by default) or MySQL shards, executed through gearmand"
  ),
  Command.withSubcommands([
    queueRunnerCommand,
    injectorCommand,
    controllerCommand,
    runCommand,
    injectCommand,
    consumeCommand,
    jobsCommand,
    functionsCommand,
    schedulesCommand,
    statusCommand,
    migrateCommand,
    schemaCommand,
    demoCommand,
    gearmandCommand,
    upCommand,
    webCommand,
    driverCommand
  ])
)

const cli = Command.run(garivini, { name: "garivini", version: "0.1.0" })

// A second SIGINT/SIGTERM while the first is being honoured: stop at once.
let signals = 0
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (++signals > 1) process.exit(130)
  })
}

/** The subcommand, for the default service name of its spans (`garivini-<command>`). */
const COMMANDS = new Set([
  "queue-runner",
  "injector",
  "controller",
  "run",
  "inject",
  "consume",
  "jobs",
  "functions",
  "schedules",
  "status",
  "migrate",
  "schema",
  "demo",
  "gearmand",
  "up",
  "web",
  "driver"
])
const command = process.argv.slice(2).find((a) => COMMANDS.has(a)) ?? "cli"

cli(process.argv).pipe(
  // Lets a command tell whether --log-level (@effect/cli's built-in) was given: see logging.ts.
  Logger.withMinimumLogLevel(levelNotGiven),
  // @effect/cli has already printed what was wrong with the arguments.
  Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => void (process.exitCode = 2))),
  Effect.provide(NodeContext.layer),
  // Spans over OTLP when the standard variables ask for them; flushed when the command ends.
  Effect.provide(Tracing.layerFromEnv(command)),
  Effect.catchTag("TracingConfigInvalid", (e) =>
    Effect.sync(() => {
      console.error(`garivini: ${e.message}`)
      process.exitCode = 2
    })),
  // Each command installs its own logger (format from the settings, to stderr).
  NodeRuntime.runMain({ disableErrorReporting: false, disablePrettyLogger: true })
)
