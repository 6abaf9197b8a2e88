// Real MariaDB for the tests: databases made per test and dropped afterwards.
import { Effect, Redacted } from "effect"
import * as Mysql from "mysql2/promise"
import type { ShardConfig } from "../../src/storage/targets.js"
import { migrate } from "../../src/storage/migrate.js"

export const mysqlHost = process.env["GARIVINI_TEST_MYSQL_HOST"] ?? "127.0.0.1"
export const mysqlPort = Number(process.env["GARIVINI_TEST_MYSQL_PORT"] ?? "3306")

const admin = Effect.acquireRelease(
  Effect.promise(() => Mysql.createConnection({ host: mysqlHost, port: mysqlPort, user: "root", password: "" })),
  (conn) => Effect.promise(() => conn.end())
)

/** Runs a statement as root (test setup and inspection). */
export const adminQuery = (sql: string, params: ReadonlyArray<unknown> = []) =>
  Effect.scoped(Effect.flatMap(admin, (conn) => Effect.promise(() => conn.query(sql, [...params]))))

export const shardConfig = (id: number, database: string, port = mysqlPort): ShardConfig => ({
  id,
  host: mysqlHost,
  port,
  database,
  user: "root",
  password: Redacted.make(""),
  connectTimeout: "2 seconds"
})

let counter = 0
/**
 * `count` fresh databases with the schema applied, as shards 1..count; dropped when the scope
 * closes.
 */
export const testShards = (count: number) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const tag = `${process.pid}_${Date.now().toString(36)}_${counter++}`
      const shards = Array.from({ length: count }, (_, i) => shardConfig(i + 1, `garivini_test_${tag}_${i + 1}`))
      yield* migrate(shards).pipe(Effect.orDie)
      return shards
    }),
    (shards) =>
      Effect.forEach(shards, (s) => adminQuery(`DROP DATABASE IF EXISTS \`${s.database}\``), { discard: true })
  )
