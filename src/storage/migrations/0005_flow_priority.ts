/**
 * Migration 5: flow control's concurrency limit and job priorities (docs/flow-control.md).
 * Additive only, so Perl clients and workers, whose statements name their columns, see no change:
 * - `garivini_function.concurrency`: at most this many of the function's jobs leased at once
 *   (NULL: no limit);
 * - `job.priority`: 1 high, 0 normal (the default, which a Perl insert gets), -1 low;
 * - index `job_claim (priority DESC, run_after)`: the claim's order (higher priority first, then
 *   oldest) read from the index, no sort of the due rows (MariaDB >= 10.8 and MySQL 8 keep DESC);
 * - index `job_lease (funcname, leased_until)`: a concurrency-limited claim counts the function's
 *   leased rows through it, without reading the function's backlog.
 * Numbered 5: migration 4 belongs to another change (the migrator takes them in any order of
 * arrival only while none was recorded past them: see the report of this change). Frozen once released.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** MySQL / MariaDB: the new columns are instant ADD COLUMNs; the index is built online. */
export const MYSQL: ReadonlyArray<string> = [
  "ALTER TABLE garivini_function ADD COLUMN concurrency INT UNSIGNED NULL",
  `ALTER TABLE job
  ADD COLUMN priority TINYINT NOT NULL DEFAULT 0,
  ADD INDEX job_claim (priority DESC, run_after),
  ADD INDEX job_lease (funcname, leased_until)`
]

/** SQLite: one column per statement. */
export const SQLITE: ReadonlyArray<string> = [
  "ALTER TABLE garivini_function ADD COLUMN concurrency INTEGER NULL",
  "ALTER TABLE job ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
  "CREATE INDEX IF NOT EXISTS job_claim ON job (priority DESC, run_after)",
  "CREATE INDEX IF NOT EXISTS job_lease ON job (funcname, leased_until)"
]

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = sql.onDialectOrElse({ mysql: () => MYSQL, orElse: () => SQLITE })
  for (const statement of statements) yield* sql.unsafe(statement)
})
