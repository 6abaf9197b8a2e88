/**
 * Migration 3: flow control (docs/flow-control.md). New tables only, so Perl clients and workers,
 * which never name them, see no change:
 * - `garivini_function`: per-function controls (paused, rate limit), written to every shard;
 * - `garivini_rate_bucket`: a rate limit's token bucket, kept on the lowest shard only;
 * - `garivini_schedule`: recurring schedules and the next slot of each, on the lowest shard.
 * Frozen once released: later changes are new migrations.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** MySQL / MariaDB. Names are bytes-compared, as `job.funcname` is (utf8mb4_bin). */
export const MYSQL: ReadonlyArray<string> = [
  `CREATE TABLE IF NOT EXISTS garivini_function (
  funcname VARCHAR(200) NOT NULL,
  paused TINYINT UNSIGNED NOT NULL DEFAULT 0,
  rate_count INT UNSIGNED NULL,
  rate_period_ms INT UNSIGNED NULL,
  rate_burst INT UNSIGNED NULL,
  PRIMARY KEY (funcname)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
  `CREATE TABLE IF NOT EXISTS garivini_rate_bucket (
  funcname VARCHAR(200) NOT NULL,
  tokens DOUBLE NOT NULL,
  refilled_ms BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (funcname)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
  `CREATE TABLE IF NOT EXISTS garivini_schedule (
  name VARCHAR(200) NOT NULL,
  cron VARCHAR(255) NOT NULL,
  timezone VARCHAR(64) NULL,
  funcname VARCHAR(200) NOT NULL,
  arg MEDIUMTEXT NULL,
  missed VARCHAR(16) NOT NULL DEFAULT 'skip',
  next_slot BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`
]

/** SQLite: the same columns. */
export const SQLITE: ReadonlyArray<string> = [
  `CREATE TABLE IF NOT EXISTS garivini_function (
    funcname TEXT NOT NULL PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    rate_count INTEGER NULL,
    rate_period_ms INTEGER NULL,
    rate_burst INTEGER NULL
  )`,
  `CREATE TABLE IF NOT EXISTS garivini_rate_bucket (
    funcname TEXT NOT NULL PRIMARY KEY,
    tokens REAL NOT NULL,
    refilled_ms INTEGER NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS garivini_schedule (
    name TEXT NOT NULL PRIMARY KEY,
    cron TEXT NOT NULL,
    timezone TEXT NULL,
    funcname TEXT NOT NULL,
    arg TEXT NULL,
    missed TEXT NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'run-once')),
    next_slot INTEGER NOT NULL
  )`
]

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = sql.onDialectOrElse({ mysql: () => MYSQL, orElse: () => SQLITE })
  for (const statement of statements) yield* sql.unsafe(statement)
})
