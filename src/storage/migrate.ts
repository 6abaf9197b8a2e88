/**
 * `garivini migrate` and `Migrate` in the API: the versioned migrations of `migrations/` applied
 * to every MySQL shard (its database created first) or to a SQLite file, and their status.
 */
import { existsSync, readFileSync } from "node:fs"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, ExecutionStrategy, Layer, Option, Scope } from "effect"
import type { ShardConfig } from "./targets.js"
import { ShardUnavailable, StorageError } from "../errors.js"
import type { SqliteDriverMissing } from "../errors.js"
import * as Migrations from "./migrations/migrator.js"
import type { Applied, Status } from "./migrations/migrator.js"
import { JobTableMismatch, MigrationFailed, MigrationsLocked } from "./migrations/migrator.js"
import { clientConfig, openClient } from "./sql/mysql.js"
import { loadDriver } from "./sql/sqlite.js"
import { layerSqlite } from "./Storage.js"

export { MIGRATIONS_TABLE, migrations } from "./migrations/index.js"
export {
  apply,
  applyOf,
  JobTableMismatch,
  known,
  label,
  MigrationFailed,
  MigrationsLocked,
  status,
  statusOf
} from "./migrations/migrator.js"
export type { Applied, MigrationList, MigrationState, Status } from "./migrations/migrator.js"

/** schema.sql, shipped at the package root (beside src/ and dist/): migration 1, documented. */
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

/** What `migrate` did to one database. */
export interface TargetMigrated extends Applied {
  /** `shard 1 (garivini@127.0.0.1:3306)` or `SQLite file ./garivini.db`. */
  readonly target: string
}

/** The status of one database; `exists` false: no database (or file) yet, everything pending. */
export interface TargetStatus extends Status {
  readonly target: string
  readonly exists: boolean
}

export type MigrateError = StorageError | ShardUnavailable | JobTableMismatch | MigrationFailed | MigrationsLocked

export const describeShard = (shard: ShardConfig): string =>
  `shard ${shard.id} (${shard.database}@${shard.host.includes(":") ? `[${shard.host}]` : shard.host}:${shard.port})`

export const describeSqlite = (filename: string): string => `SQLite file ${filename}`

const causeText = (e: { readonly message: string; readonly cause?: unknown }) =>
  `${e.message}: ${e.cause instanceof Error ? e.cause.message : String(e.cause ?? "")}`

/** The per-database errors, told which database they are about. */
const located = (target: string) => <A, R>(effect: Effect.Effect<A, Migrations.ApplyError, R>) =>
  effect.pipe(Effect.catchTags({
    JobTableMismatch: (e) => Effect.fail(new JobTableMismatch({ ...e, target })),
    MigrationFailed: (e) => Effect.fail(new MigrationFailed({ ...e, target })),
    MigrationsLocked: (e) => Effect.fail(new MigrationsLocked({ ...e, target }))
  }))

/** A statement the server refused, as the error of a storage operation. */
const sqlFailure = (dbid: number, operation: string) => (e: SqlError) =>
  new StorageError({ dbid, operation, reason: causeText(e) })

/**
 * Runs `body` on shard's database, creating it first when `create`; without `create`, a missing
 * database gives none (nothing is created).
 */
const onShard = <A, E>(
  shard: ShardConfig,
  create: boolean,
  body: Effect.Effect<A, E, SqlClient.SqlClient>
): Effect.Effect<Option.Option<A>, E | StorageError | ShardUnavailable> =>
  Effect.scoped(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const fail = (operation: string) => sqlFailure(shard.id, operation)
    const unreachable = (e: SqlError) => new ShardUnavailable({ dbid: shard.id, reason: causeText(e) })
    const database = `\`${shard.database.replace(/`/g, "``")}\``
    // Without a database first: it may not exist yet.
    const server = yield* openClient(
      clientConfig(shard, undefined),
      yield* Scope.fork(scope, ExecutionStrategy.sequential)
    ).pipe(
      Effect.mapError(unreachable)
    )
    if (create) {
      yield* server.unsafe(`CREATE DATABASE IF NOT EXISTS ${database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`).pipe(
        Effect.mapError(fail("create database"))
      )
    } else {
      const rows =
        yield* server`SELECT 1 AS found FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${shard.database}`.pipe(
          Effect.mapError(fail("look for the database"))
        )
      if (rows.length === 0) return Option.none()
    }
    const db = yield* openClient(clientConfig(shard, shard.database), scope).pipe(Effect.mapError(unreachable))
    return Option.some(yield* Effect.provideService(body, SqlClient.SqlClient, db))
  })).pipe(Effect.annotateLogs({ shard: shard.id, database: shard.database }))

/** Creates the shard's database if needed and applies the missing migrations. */
export const migrateShard = (shard: ShardConfig): Effect.Effect<TargetMigrated, MigrateError> => {
  const target = describeShard(shard)
  const body = located(target)(Migrations.apply).pipe(
    Effect.catchTag("SqlError", (e) => Effect.fail(sqlFailure(shard.id, "migrate")(e)))
  )
  return onShard(shard, true, body).pipe(
    Effect.map((applied) => ({ target, ...Option.getOrElse(applied, () => ({ applied: [], adopted: false })) }))
  )
}

/** Migrates every shard, one after the other; what each one needed. */
export const migrate = (
  shards: ReadonlyArray<ShardConfig>
): Effect.Effect<ReadonlyArray<TargetMigrated>, MigrateError> => Effect.forEach(shards, migrateShard)

const nothingApplied: Status = {
  migrations: Migrations.known.map((k) => ({
    id: k.id,
    label: Migrations.label(k.id, k.name),
    appliedAt: Option.none(),
    unknown: false
  })),
  adoptsJobTable: false
}

/** Each migration on the shard, applied (when) or pending; changes nothing. */
export const statusShard = (shard: ShardConfig): Effect.Effect<TargetStatus, StorageError | ShardUnavailable> => {
  const target = describeShard(shard)
  const body = Effect.mapError(Migrations.status, sqlFailure(shard.id, "read the migrations"))
  return onShard(shard, false, body).pipe(
    Effect.map(Option.match({
      onNone: () => ({ target, exists: false, ...nothingApplied }),
      onSome: (status) => ({ target, exists: true, ...status })
    }))
  )
}

export const statusShards = (shards: ReadonlyArray<ShardConfig>) => Effect.forEach(shards, statusShard)

/** `body` on an existing SQLite file, through a connection of its own. */
const onSqliteFile = <A, E>(filename: string, body: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.scoped(Effect.gen(function*() {
    const driver = yield* loadDriver()
    const unavailable = (reason: string) => new ShardUnavailable({ dbid: 1, reason: `${filename}: ${reason}` })
    const client = yield* driver.make({ filename }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.catchAllDefect((d) => Effect.fail(unavailable(d instanceof Error ? d.message : String(d))))
    )
    return yield* Effect.provideService(body, SqlClient.SqlClient, client)
  }))

/**
 * Creates a SQLite file if needed and applies the missing migrations. An existing file is
 * migrated here first (typed errors: a foreign `job` table is `JobTableMismatch`); then the file
 * is opened as a shard would (a new file is created private and migrated on that open).
 */
export const migrateSqlite = (
  filename: string
): Effect.Effect<TargetMigrated, MigrateError | SqliteDriverMissing> =>
  Effect.gen(function*() {
    const target = describeSqlite(filename)
    const existed = existsSync(filename)
    const apply = located(target)(Migrations.apply).pipe(
      Effect.catchTag("SqlError", (e) => Effect.fail(sqlFailure(1, "migrate")(e)))
    )
    const before = existed ? yield* onSqliteFile(filename, apply) : undefined
    yield* Effect.scoped(Layer.build(layerSqlite({ filename })))
    if (before !== undefined) return { target, ...before }
    const after = yield* onSqliteFile(
      filename,
      Effect.mapError(Migrations.status, sqlFailure(1, "read the migrations"))
    )
    return {
      target,
      applied: after.migrations.filter((m) => Option.isSome(m.appliedAt)).map((m) => m.label),
      adopted: false
    }
  }).pipe(Effect.annotateLogs({ sqlite: filename }))

/** Each migration in the SQLite file, applied (when) or pending; a missing file is not created. */
export const statusSqlite = (
  filename: string
): Effect.Effect<TargetStatus, StorageError | ShardUnavailable | SqliteDriverMissing> => {
  const target = describeSqlite(filename)
  return existsSync(filename)
    ? Effect.map(
      onSqliteFile(filename, Effect.mapError(Migrations.status, sqlFailure(1, "read the migrations"))),
      (status) => ({ target, exists: true, ...status })
    )
    : Effect.succeed({ target, exists: false, ...nothingApplied })
}
