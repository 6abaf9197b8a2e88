// What the benchmarks share: a scratch database on the local MariaDB, dropped at the end, and a runner.
import { Effect, Logger, LogLevel } from "effect"
import * as Mysql from "mysql2/promise"
import type { ShardConfig } from "../src/storage/targets.js"
import { parseShardUrl } from "../src/storage/targets.js"

export const mysqlBase = process.env["GARIVINI_BENCH_MYSQL"] ?? "mysql://root@127.0.0.1:3306"

/** A shard on a scratch database named after `name` and this process. */
export const scratchShard = (name: string): ShardConfig => {
  const parsed = parseShardUrl(`${mysqlBase}/garivini_bench_${name}_${process.pid}`, 1)
  if (parsed._tag === "Left") throw new Error(parsed.left.message)
  return parsed.right
}

const dropDatabase = (shard: ShardConfig) =>
  Effect.promise(async () => {
    const conn = await Mysql.createConnection({ host: shard.host, port: shard.port, user: shard.user })
    await conn.query(`DROP DATABASE IF EXISTS \`${shard.database}\``)
    await conn.end()
  })

/** Runs a benchmark with warnings only, drops its scratch database, exits non-zero on failure. */
export const runBench = <E>(shard: ShardConfig, program: Effect.Effect<void, E>) =>
  Effect.runPromise(program.pipe(Effect.ensuring(dropDatabase(shard)), Logger.withMinimumLogLevel(LogLevel.Warning)))
    .catch((e) => {
      console.error(e)
      process.exitCode = 1
    })
