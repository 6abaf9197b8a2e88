/**
 * `garivini migrate`: applies the missing migrations to every shard (or the SQLite file) and
 * says what it did per shard; `--status` lists each migration, applied (when) or pending, and
 * changes nothing.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { migrate, migrateSqlite, statusShards, statusSqlite } from "../storage/migrate.js"
import type { TargetMigrated, TargetStatus } from "../storage/migrate.js"
import { outputOptions, storageOptions } from "./config.js"
import { describeStorage, withSettingsOneShot } from "./shared.js"

/** `shard 1 (garivini@127.0.0.1:3306): applied 0001_job_table`, or `up to date`. */
export const migratedLine = (r: TargetMigrated): string => {
  const adopted = r.adopted ? "adopted the existing job table; " : ""
  return `${r.target}: ${r.applied.length === 0 ? "up to date" : `${adopted}applied ${r.applied.join(", ")}`}`
}

/** The target, then one line per migration. */
export const statusLines = (s: TargetStatus): ReadonlyArray<string> => [
  `${s.target}:${s.exists ? "" : " (does not exist yet)"}`,
  ...s.migrations.map((m) =>
    `  ${m.label}  ${
      Option.match(m.appliedAt, {
        onNone: () => m.id === 1 && s.adoptsJobTable ? "pending (adopts the existing job table)" : "pending",
        onSome: (at) => `applied ${at.toISOString()}${m.unknown ? " (by a newer garivini)" : ""}`
      })
    }`
  )
]

export const migrateCommand = Command.make(
  "migrate",
  {
    ...storageOptions,
    status: Options.boolean("status").pipe(
      Options.withDescription("List each migration per shard, applied (when) or pending; change nothing")
    ),
    ...outputOptions
  },
  ({ status, ...flags }) =>
    withSettingsOneShot(flags, (settings) =>
      status
        ? Effect.gen(function*() {
          const states = yield* Option.match(settings.sqlite, {
            onNone: () => statusShards(settings.shards),
            onSome: (file) => Effect.map(statusSqlite(file), (s) => [s])
          })
          for (const line of states.flatMap(statusLines)) yield* Console.log(line)
        })
        : Effect.gen(function*() {
          const done = yield* Option.match(settings.sqlite, {
            onNone: () => migrate(settings.shards),
            onSome: (file) => Effect.map(migrateSqlite(file), (r) => [r])
          })
          for (const r of done) yield* Console.log(migratedLine(r))
          yield* Console.log(`schema applied to ${describeStorage(settings)}`)
        }))
).pipe(Command.withDescription(
  "Create each shard's database (or the SQLite file) if needed and apply the migrations it lacks; --status lists them"
))
