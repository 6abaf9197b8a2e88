/** `garivini schema`: prints schema.sql. */
import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { schemaSql } from "../storage/migrate.js"

export const schemaCommand = Command.make("schema", {}, () => Effect.flatMap(Effect.sync(schemaSql), Console.log)).pipe(
  Command.withDescription("Print schema.sql, the job table")
)
