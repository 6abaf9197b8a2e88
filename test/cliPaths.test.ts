// The built `garivini` command where things are down or configured otherwise than by YAML:
// `status` with a shard or gearmand down, a JSON config file, JSON log lines and --log-level.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { gearmandServer } from "./gearman/gearmand.js"
import { garivini } from "./support/cli.js"
import { tempDir } from "./support/files.js"
import { adminQuery, mysqlHost, mysqlPort, testShards } from "./support/mysql.js"
import { closedPort } from "./support/ports.js"

interface StatusJson {
  readonly functions: ReadonlyArray<{
    readonly shard: number
    readonly function: string
    readonly due: number
    readonly gearmand_queued: number | null
    readonly gearmand_running: number | null
    readonly gearmand_workers: number | null
  }>
  readonly unavailable_shards: ReadonlyArray<{ readonly shard: number; readonly error: string }>
  readonly gearmand_error: string | null
}

describe("garivini status and settings, failure paths", () => {
  it.scopedLive(
    "status --json with a shard down and gearmand down: the live shard's rows, the dead shard named, gearmand's error, exit 0",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        yield* adminQuery(
          `INSERT INTO \`${
            shard!.database
          }\`.job (funcname, arg, run_after) VALUES ('alive', 'a', 0), ('alive', 'b', 0)`
        )
        const deadPort = yield* closedPort
        const gearmandPort = yield* closedPort
        const result = yield* garivini(
          "status",
          "--json",
          "--db",
          `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}?id=1`,
          "--db",
          `mysql://root@127.0.0.1:${deadPort}/nowhere?id=2`,
          "--gearmand",
          `127.0.0.1:${gearmandPort}`
        )
        assert.strictEqual(result.code, 0, result.stderr)
        const status = JSON.parse(result.stdout) as StatusJson
        assert.deepStrictEqual(status.functions.map((f) => [f.shard, f.function, f.due]), [[1, "alive", 2]])
        assert.deepStrictEqual(
          status.functions.map((f) => [f.gearmand_queued, f.gearmand_running, f.gearmand_workers]),
          [[null, null, null]]
        )
        assert.deepStrictEqual(status.unavailable_shards.map((u) => u.shard), [2])
        assert.include(status.unavailable_shards[0]!.error, "shard 2")
        assert.isString(status.gearmand_error)
        assert.include(status.gearmand_error!, `127.0.0.1:${gearmandPort}`)
      }),
    60_000
  )

  it.scopedLive(
    "a JSON config file is read; --log-format json gives one JSON object a stderr line; quiet at the default level, INFO at --log-level info, debug lines only at --log-level debug",
    () =>
      Effect.gen(function*() {
        const [shard] = yield* testShards(1)
        const gearmand = yield* gearmandServer
        const dir = yield* tempDir("garivini-cli-json-")
        const config = join(dir, "garivini.json")
        // Nothing on the command line names the database or the job server: only the file does.
        writeFileSync(
          config,
          JSON.stringify({
            db: [{ url: `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`, id: 4 }],
            gearmand: [gearmand]
          })
        )
        yield* adminQuery(
          `INSERT INTO \`${shard!.database}\`.job (funcname, arg, run_after) VALUES ('from_json', 'a', 0)`
        )

        const lines = (stderr: string) =>
          stderr.split("\n").filter((l) => l !== "").map((l) => {
            const parsed = JSON.parse(l) as Record<string, unknown>
            for (const key of ["message", "logLevel", "timestamp", "annotations"]) assert.property(parsed, key, l)
            return parsed
          })

        const debug = yield* garivini(
          "--log-level",
          "debug",
          "status",
          "--json",
          "--config",
          config,
          "--log-format",
          "json"
        )
        assert.strictEqual(debug.code, 0, debug.stderr)
        const status = JSON.parse(debug.stdout) as StatusJson
        assert.deepStrictEqual(status.functions.map((f) => [f.shard, f.function, f.due]), [[4, "from_json", 1]])
        assert.deepStrictEqual([status.unavailable_shards, status.gearmand_error], [[], null])
        const debugLines = lines(debug.stderr)
        assert.isTrue(
          debugLines.some((l) => l["logLevel"] === "INFO" && String(l["message"]).startsWith("connected:")),
          debug.stderr
        )
        assert.isTrue(
          debugLines.some((l) => l["logLevel"] === "DEBUG" && l["message"] === "gearman server up"),
          debug.stderr
        )

        // The same run at the default level of a one-shot command (warning): the same answer,
        // nothing on stderr; at --log-level info, the INFO line and no DEBUG line.
        const quiet = yield* garivini("status", "--json", "--config", config, "--log-format", "json")
        assert.strictEqual(quiet.code, 0, quiet.stderr)
        assert.deepStrictEqual(
          (JSON.parse(quiet.stdout) as StatusJson).functions.map((f) => [f.shard, f.function, f.due]),
          [[4, "from_json", 1]]
        )
        assert.strictEqual(quiet.stderr, "")
        const info = yield* garivini(
          "status",
          "--json",
          "--config",
          config,
          "--log-format",
          "json",
          "--log-level",
          "info"
        )
        assert.strictEqual(info.code, 0, info.stderr)
        const infoLines = lines(info.stderr)
        assert.isTrue(
          infoLines.some((l) => l["logLevel"] === "INFO" && String(l["message"]).startsWith("connected:")),
          info.stderr
        )
        assert.isFalse(infoLines.some((l) => l["logLevel"] === "DEBUG"), info.stderr)
      }),
    60_000
  )
})
