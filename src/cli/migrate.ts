/** `garivini migrate`: applies schema.sql to every shard (idempotent). */
import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { migrate } from "../storage/migrate.js"
import { dbOption, reportFailure, resolveShards } from "./shared.js"

export const migrateCommand = Command.make("migrate", { db: dbOption }, ({ db }) =>
  reportFailure(Effect.gen(function*() {
    const shards = yield* resolveShards(db)
    yield* migrate(shards)
    yield* Console.log(`schema applied to ${shards.length} shard(s): ${shards.map((s) => `${s.id}=${s.database}`).join(", ")}`)
  }))).pipe(Command.withDescription("Create each shard's database if needed and apply schema.sql (idempotent)"))
