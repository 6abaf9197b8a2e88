/**
 * Migration 6: `garivini_throughput`, jobs completed and failed per minute, for the web console's
 * chart (docs/web.md). A new table only, so Perl clients and workers, which never name it, see no
 * change. Each completion batch (one DELETE) and each recorded failure adds one upsert to its own
 * shard's table; `slot` (0–15, random per write) spreads concurrent writers of one minute over
 * several rows, so they do not queue on one row lock. Readers sum the slots. Frozen once released.
 * (Numbers 4 and 5 belong to other features.)
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const THROUGHPUT_TABLE = "garivini_throughput"

export const MYSQL = `CREATE TABLE IF NOT EXISTS ${THROUGHPUT_TABLE} (
  minute INT UNSIGNED NOT NULL,
  slot TINYINT UNSIGNED NOT NULL,
  completed BIGINT UNSIGNED NOT NULL DEFAULT 0,
  failed BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, slot)
) ENGINE=InnoDB`

export const SQLITE = `CREATE TABLE IF NOT EXISTS ${THROUGHPUT_TABLE} (
  minute INTEGER NOT NULL,
  slot INTEGER NOT NULL,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, slot)
)`

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(sql.onDialectOrElse({ mysql: () => MYSQL, orElse: () => SQLITE }))
})
