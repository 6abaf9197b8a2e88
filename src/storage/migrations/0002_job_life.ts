/**
 * Migration 2: a job's life on record (docs/job-life.md). Additive only: nullable columns that
 * Perl Garivini's statements never name, so its inserts, claims, reschedules and deletes run as
 * before. Frozen once released.
 *
 * - `last_error`, `last_error_at`, `last_error_attempt`: the last failure's text (bounded when
 *   written), its time and the attempt it ended;
 * - `ended`, `ended_at`: `dead` (attempts used up) or `cancelled`, set with run_after = never;
 * - `leased_until`: the lease our claims write in run_after (a dispatched job shows as such).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** The columns this migration adds, as the shards' capability check looks for them. */
export const JOB_LIFE_COLUMNS = [
  "last_error",
  "last_error_at",
  "last_error_attempt",
  "ended",
  "ended_at",
  "leased_until"
] as const

/** MySQL / MariaDB: one ALTER (one table rebuild at most). */
export const MYSQL: ReadonlyArray<string> = [
  `ALTER TABLE job
  ADD COLUMN last_error TEXT NULL,
  ADD COLUMN last_error_at INT UNSIGNED NULL,
  ADD COLUMN last_error_attempt TINYINT UNSIGNED NULL,
  ADD COLUMN ended ENUM('dead', 'cancelled') NULL,
  ADD COLUMN ended_at INT UNSIGNED NULL,
  ADD COLUMN leased_until INT UNSIGNED NULL`
]

/** SQLite: one column per statement (its ALTER TABLE adds one at a time). */
export const SQLITE: ReadonlyArray<string> = [
  "ALTER TABLE job ADD COLUMN last_error TEXT NULL",
  "ALTER TABLE job ADD COLUMN last_error_at INTEGER NULL",
  "ALTER TABLE job ADD COLUMN last_error_attempt INTEGER NULL",
  "ALTER TABLE job ADD COLUMN ended TEXT NULL CHECK (ended IN ('dead', 'cancelled'))",
  "ALTER TABLE job ADD COLUMN ended_at INTEGER NULL",
  "ALTER TABLE job ADD COLUMN leased_until INTEGER NULL"
]

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = sql.onDialectOrElse({ mysql: () => MYSQL, orElse: () => SQLITE })
  for (const statement of statements) yield* sql.unsafe(statement)
})
