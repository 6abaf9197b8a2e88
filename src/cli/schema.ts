/** `garivini schema [--sqlite]`: prints schema.sql, or the SQLite file's equivalent. */
import { Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { schemaSql } from "../storage/migrate.js"
import { SQLITE } from "../storage/migrations/0001_job_table.js"

export const schemaCommand = Command.make(
  "schema",
  {
    sqlite: Options.boolean("sqlite").pipe(
      Options.withDescription("The schema of a sqlite: database (applied when it is opened)")
    )
  },
  ({ sqlite }) => Effect.flatMap(Effect.sync(() => sqlite ? `${SQLITE.join(";\n")};` : schemaSql()), Console.log)
).pipe(Command.withDescription("Print schema.sql, the job table (--sqlite: as in a SQLite file)"))
