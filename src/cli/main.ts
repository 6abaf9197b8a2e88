/** The `garivini` command. */
import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { injectCommand } from "./inject.js"
import { jobsCommand } from "./jobs.js"
import { migrateCommand } from "./migrate.js"
import { schemaCommand } from "./schema.js"

const garivini = Command.make("garivini").pipe(
  Command.withDescription("A durable job layer for Gearman: jobs persisted in MySQL, executed through gearmand"),
  Command.withSubcommands([migrateCommand, schemaCommand, injectCommand, jobsCommand])
)

const cli = Command.run(garivini, { name: "garivini", version: "0.1.0" })

cli(process.argv).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain({ disableErrorReporting: false }))
