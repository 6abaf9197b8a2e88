/**
 * `garivini migrate`: creates each shard's database if needed and applies schema.sql to it.
 * Idempotent: every statement is `IF NOT EXISTS`.
 */
import { readFileSync } from "node:fs"
import { Effect, ExecutionStrategy, Layer, Scope } from "effect"
import type { ShardConfig } from "../config.js"
import { ShardUnavailable, StorageError } from "../errors.js"
import { clientConfig, openClient } from "./sql/mysql.js"
import { layerSqlite } from "./Storage.js"

/** schema.sql, shipped at the package root (beside src/ and dist/). */
export const schemaSql = (): string => readFileSync(new URL("../../schema.sql", import.meta.url), "utf8")

/** The statements of schema.sql, comments dropped. */
export const schemaStatements = (sql: string = schemaSql()): ReadonlyArray<string> =>
  sql
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("--"))
    .join("\n")
    .split(";")
    .map((s) => s.trim())
    .filter((s) => s !== "")

/** Applies the schema to one shard, creating its database first. */
export const migrateShard = (shard: ShardConfig): Effect.Effect<void, StorageError | ShardUnavailable> =>
  Effect.scoped(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const fail = (operation: string) => (e: { readonly message: string; readonly cause?: unknown }) =>
      new StorageError({ dbid: shard.id, operation, reason: `${e.message}: ${String(e.cause ?? "")}` })
    const unreachable = (e: { readonly message: string; readonly cause?: unknown }) =>
      new ShardUnavailable({ dbid: shard.id, reason: `${e.message}: ${String(e.cause ?? "")}` })
    const database = `\`${shard.database.replace(/`/g, "``")}\``
    // Without a database first: it may not exist yet.
    const server = yield* openClient(clientConfig(shard, undefined), yield* Scope.fork(scope, ExecutionStrategy.sequential)).pipe(
      Effect.mapError(unreachable)
    )
    yield* server.unsafe(`CREATE DATABASE IF NOT EXISTS ${database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`).pipe(
      Effect.mapError(fail("create database"))
    )
    const db = yield* openClient(clientConfig(shard, shard.database), scope).pipe(Effect.mapError(unreachable))
    for (const statement of schemaStatements()) {
      yield* db.unsafe(statement).pipe(Effect.mapError(fail("apply schema")))
    }
    yield* Effect.logInfo(`schema applied`).pipe(Effect.annotateLogs({ shard: shard.id, database: shard.database }))
  }))

/** Applies the schema to every shard, one after the other. */
export const migrate = (shards: ReadonlyArray<ShardConfig>) => Effect.forEach(shards, migrateShard, { discard: true })

/** Creates a SQLite file if needed and applies its schema: what opening it does. */
export const migrateSqlite = (filename: string) => Effect.scoped(Effect.asVoid(Layer.build(layerSqlite({ filename }))))
