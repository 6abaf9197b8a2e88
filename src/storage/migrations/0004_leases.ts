/**
 * Migration 4: fenced leases and heartbeats (docs/job-life.md, "Fenced leases"). Additive only:
 * two nullable columns that Perl Garivini's statements never name, so its inserts, claims,
 * reschedules and deletes run as before. Frozen once released.
 *
 * - `lease_token`: the token of the lease our claims (QueueRunner, Injector, Controller) wrote,
 *   carried in the worker JSON as `"lease"`; our completions apply only while it still holds.
 *   32 lowercase hex characters (16 random bytes), ASCII: the same text in every layer (memory,
 *   SQLite, MySQL), in the worker JSON and in a bound parameter, with no driver turning it into a
 *   Buffer on one side and a Uint8Array on the other, and printable by `jobs show`. (Binary would
 *   save 16 bytes a row; rows carry an arg of any size, so that buys nothing measurable.)
 * - `heartbeat_at`: the unix time of the last heartbeat of the worker running the job (NULL: no
 *   one started it, or it is shorter than one heartbeat interval).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** The columns this migration adds, as the shards' capability check looks for them. */
export const LEASE_COLUMNS = ["lease_token", "heartbeat_at"] as const

/** MySQL / MariaDB: one ALTER (one table rebuild at most). */
export const MYSQL: ReadonlyArray<string> = [
  `ALTER TABLE job
  ADD COLUMN lease_token CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
  ADD COLUMN heartbeat_at INT UNSIGNED NULL`
]

/** SQLite: one column per statement (its ALTER TABLE adds one at a time). */
export const SQLITE: ReadonlyArray<string> = [
  "ALTER TABLE job ADD COLUMN lease_token TEXT NULL",
  "ALTER TABLE job ADD COLUMN heartbeat_at INTEGER NULL"
]

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = sql.onDialectOrElse({ mysql: () => MYSQL, orElse: () => SQLITE })
  for (const statement of statements) yield* sql.unsafe(statement)
})
