/**
 * Migration 7: `traceparent`, the W3C trace context of the insert (docs/operations.md, "Traces"),
 * read by claims and carried in the worker JSON so that one trace follows a job from insert to
 * run across processes. Additive only: one nullable column that Perl Garivini's statements never
 * name. ASCII and binary-collated, like `lease_token`: the same 55 characters in every layer.
 * Frozen once released.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** The column this migration adds, as the shards' capability check looks for it. */
export const TRACEPARENT_COLUMN = "traceparent"

export const MYSQL = "ALTER TABLE job ADD COLUMN traceparent VARCHAR(55) CHARACTER SET ascii COLLATE ascii_bin NULL"

export const SQLITE = "ALTER TABLE job ADD COLUMN traceparent TEXT NULL"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(sql.onDialectOrElse({ mysql: () => MYSQL, orElse: () => SQLITE }))
})
