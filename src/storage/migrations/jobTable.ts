/**
 * What is already in a database before migrations ran: does it hold a `job` table, and is that
 * table the Perl shape (so it can be adopted as migration 1 without a change)?
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Schema } from "effect"

// COUNT(*) is a BIGINT: a string when the driver returns big numbers as strings.
const decodeCount = Schema.decodeUnknown(
  Schema.Array(Schema.Struct({ n: Schema.Union(Schema.Number, Schema.NumberFromString) }))
)

/** Decoding rows of the catalog; a row that does not decode is the server's oddity, not ours to fix. */
const rowsAs = <A, I>(schema: Schema.Schema<A, I>, rows: unknown) =>
  Schema.decodeUnknown(Schema.Array(schema))(rows).pipe(Effect.orDie)

/** Whether table `name` exists in the client's database. */
export const tableExists = (name: string): Effect.Effect<boolean, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql.onDialectOrElse({
      mysql: () =>
        sql`SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ${name}`,
      orElse: () => sql`SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ${name}`
    }).withoutTransform
    const [row] = yield* decodeCount(rows).pipe(Effect.orDie)
    return (row?.n ?? 0) > 0
  })

export const jobTableExists = tableExists("job")

type Family = "integer" | "text" | "bytes" | "enum"

/**
 * The Perl table's columns, each with the type families that hold its values (MySQL's
 * DATA_TYPE or SQLite's declared type): a column of another family could not hold what Perl
 * or Garivini writes.
 */
const PERL_COLUMNS: ReadonlyArray<readonly [name: string, families: ReadonlyArray<Family>]> = [
  ["jobid", ["integer"]],
  ["funcname", ["text"]],
  ["arg", ["bytes", "text"]],
  ["uniqkey", ["text"]],
  ["run_after", ["integer"]],
  ["coalesce", ["text"]],
  ["flag", ["enum", "text"]],
  ["failcount", ["integer"]]
]

const familyOf = (type: string): Family | undefined => {
  const t = type.toLowerCase()
  // The enum first: its values could contain any of the words below.
  if (t.startsWith("enum")) return "enum"
  if (t.includes("blob") || t.includes("binary")) return "bytes"
  if (t.includes("int")) return "integer"
  if (t.includes("char") || t.includes("text") || t.includes("clob")) return "text"
  return undefined
}

const Column = Schema.Struct({ name: Schema.String, type: Schema.String })
const UniqueIndex = Schema.Struct({ cols: Schema.String })

/**
 * How the existing `job` table differs from the Perl shape: missing columns, columns of a type
 * that cannot hold their values, and (MySQL) no UNIQUE (funcname, uniqkey), which is what makes
 * a `uniqkey` unique. Empty: the table can be adopted. Extra columns are allowed.
 */
export const jobTableProblems: Effect.Effect<ReadonlyArray<string>, SqlError, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = yield* rowsAs(
      Column,
      yield* sql.onDialectOrElse({
        mysql: () =>
          sql`SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'job'`,
        orElse: () => sql`SELECT name, type FROM pragma_table_info('job')`
      }).withoutTransform
    )
    const byName = new Map(columns.map((c) => [c.name.toLowerCase(), c.type]))
    const problems: Array<string> = []
    for (const [name, families] of PERL_COLUMNS) {
      const type = byName.get(name)
      if (type === undefined) problems.push(`column ${name} is missing`)
      else {
        const family = familyOf(type)
        if (family === undefined || !families.includes(family)) problems.push(`column ${name} is ${type}`)
      }
    }
    // SQLite's unique index is on expressions (rtrim), which its catalog does not name: only the
    // columns are checked there.
    const uniques = yield* sql.onDialectOrElse({
      mysql: () =>
        Effect.flatMap(
          sql`SELECT GROUP_CONCAT(LOWER(COLUMN_NAME) ORDER BY SEQ_IN_INDEX) AS cols FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'job' AND NON_UNIQUE = 0 GROUP BY INDEX_NAME`
            .withoutTransform,
          (rows) => rowsAs(UniqueIndex, rows)
        ),
      orElse: () => Effect.succeed([{ cols: "funcname,uniqkey" }])
    })
    if (!uniques.some((u) => u.cols === "funcname,uniqkey")) problems.push("no UNIQUE (funcname, uniqkey)")
    return problems
  }
)
