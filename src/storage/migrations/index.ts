/**
 * Garivini's schema migrations, in order. Each is a module `NNNN_name.ts` whose default export
 * is an Effect over `SqlClient` (one body for both dialects, `sql.onDialectOrElse` where the SQL
 * differs), run once per database by `../migrate.ts` and recorded in `garivini_migrations`.
 *
 * The rule for every migration after the first: **additive only**. Perl Garivini's clients and
 * workers share these tables and keep issuing their own statements (INSERT IGNORE naming six
 * columns, the due-jobs SELECT, UPDATE of run_after / failcount, DELETE by jobid): a new column
 * must be NULL or have a DEFAULT, no column or index they use is renamed, dropped or narrowed,
 * and no new constraint may refuse a row they write. `test/storage/migrations-perl.test.ts`
 * runs their statements after all migrations. A migration, once released, never changes.
 */
import * as Migrator from "@effect/sql/Migrator"
import jobTable from "./0001_job_table.js"
import jobLife from "./0002_job_life.js"
import flowControl from "./0003_flow_control.js"
import leases from "./0004_leases.js"
import flowPriority from "./0005_flow_priority.js"
import throughput from "./0006_throughput.js"
import traceparent from "./0007_traceparent.js"

/** Name → effect; the name's number is the migration's id. */
export const migrations = {
  "0001_job_table": jobTable,
  "0002_job_life": jobLife,
  "0003_flow_control": flowControl,
  "0004_leases": leases,
  "0005_flow_priority": flowPriority,
  "0006_throughput": throughput,
  "0007_traceparent": traceparent
} as const

/** The table that records what ran (ours, so a host app's own Effect migrations do not collide). */
export const MIGRATIONS_TABLE = "garivini_migrations"

export const loader: Migrator.Loader = Migrator.fromRecord(migrations)
