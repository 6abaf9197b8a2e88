import { Effect } from "effect"
import type { ShardConfig } from "../../src/storage/targets.js"
import type { MysqlShardOptions } from "../../src/storage/sql/mysql.js"
import * as MysqlShard from "../../src/storage/sql/mysql.js"
import { make } from "../../src/storage/Storage.js"
import type { StorageOptions } from "../../src/storage/Storage.js"
import { shardConfig, testShards } from "../support/mysql.js"
import { closedPort } from "../support/ports.js"
import { storageContract } from "./contract.js"

/** Storage over MariaDB: two fresh databases, plus a third shard on a port nothing listens on. */
export const mysqlEnv = (options: MysqlShardOptions = {}, storageOptions: StorageOptions = {}) =>
  Effect.gen(function*() {
    const shards = yield* testShards(2)
    const port = yield* closedPort
    const over = (configs: ReadonlyArray<ShardConfig>) =>
      Effect.flatMap(
        Effect.forEach(configs, (c) => MysqlShard.make(c, options)),
        (backends) => make(backends, storageOptions)
      )
    return {
      storage: yield* over(shards),
      degraded: yield* over([...shards, shardConfig(3, "garivini_nowhere", port)]),
      dead: yield* over([shardConfig(1, "garivini_nowhere", port), shardConfig(2, "garivini_nowhere", port)])
    }
  })

storageContract("MariaDB (INSERT ... RETURNING)", mysqlEnv({ insertMode: "returning" }))
storageContract("MariaDB (single-row statements, as on MySQL)", mysqlEnv({ insertMode: "statements" }))
storageContract("MariaDB (concurrent inserts coalesced, as the layer does)", mysqlEnv({}, { coalesceInserts: true }))
storageContract(
  "MariaDB (without SKIP LOCKED, as on MariaDB < 10.6 and MySQL < 8.0.1)",
  mysqlEnv({ skipLocked: false })
)
