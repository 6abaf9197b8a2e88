/**
 * Migration 1: the original `job` table, column for column the Perl Garivini's (schema.sql is
 * its documentation), and its SQLite form. Frozen: what a database recorded as migration 1 has
 * must never change; later changes are new migrations.
 *
 * A `job` table already there (a Perl Garivini database, or one made before migrations existed)
 * is adopted as it is: the migrator checked its shape first (`jobTable.ts`), and this records it
 * without touching it.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { jobTableExists } from "./jobTable.js"

/** MySQL / MariaDB: schema.sql's statement. */
export const MYSQL: ReadonlyArray<string> = [
  `CREATE TABLE IF NOT EXISTS job (
  jobid BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  funcname VARCHAR(200) NOT NULL,
  arg MEDIUMBLOB,
  uniqkey VARCHAR(255) NULL,
  run_after INT UNSIGNED NOT NULL DEFAULT 0,
  \`coalesce\` VARCHAR(255) NULL,
  flag ENUM('controller', 'shim') DEFAULT 'shim',
  failcount TINYINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (jobid),
  INDEX (run_after),
  UNIQUE (funcname, uniqkey)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`
]

/** SQLite: the same columns and semantics. */
export const SQLITE: ReadonlyArray<string> = [
  // AUTOINCREMENT: ids are never reused, even after the newest job is deleted (as InnoDB).
  `CREATE TABLE IF NOT EXISTS job (
    jobid INTEGER PRIMARY KEY AUTOINCREMENT,
    funcname TEXT NOT NULL,
    arg BLOB,
    uniqkey TEXT NULL,
    run_after INTEGER NOT NULL DEFAULT 0,
    \`coalesce\` TEXT NULL,
    flag TEXT DEFAULT 'shim' CHECK (flag IN ('controller', 'shim')),
    failcount INTEGER NOT NULL DEFAULT 0
  )`,
  "CREATE INDEX IF NOT EXISTS job_run_after ON job (run_after)",
  // On the keys without trailing spaces: utf8mb4_bin is PAD SPACE in MySQL, so 'a' and 'a '
  // are one key there, and every layer agrees (uniqueIdentity). NULL keys never collide.
  "CREATE UNIQUE INDEX IF NOT EXISTS job_unique ON job (rtrim(funcname, ' '), rtrim(uniqkey, ' '))"
]

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  if (yield* jobTableExists) return
  const statements = sql.onDialectOrElse({ mysql: () => MYSQL, orElse: () => SQLITE })
  for (const statement of statements) yield* sql.unsafe(statement)
})
