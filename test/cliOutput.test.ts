// One-shot commands print their answer on stdout and nothing on stderr on a healthy system (no
// INFO lines); the level comes from --log-level, else GARIVINI_LOG_LEVEL, else the file's log.level.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { gearmandServer } from "./gearman/gearmand.js"
import { garivini, gariviniWithEnv } from "./support/cli.js"
import { tempDir } from "./support/files.js"

const OPENED = /level=INFO .*opened .*garivini\.db: journal wal/

describe("one-shot commands' output", () => {
  it.scopedLive("inject, status, jobs list and migrate: the answer on stdout, nothing on stderr", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-output-")
      const connect = ["--db", `sqlite:${join(dir, "garivini.db")}`, "--gearmand", yield* gearmandServer]
      const inject = yield* garivini("inject", ...connect, "--count", "3", "--function", "quiet")
      assert.deepStrictEqual(inject, { code: 0, stdout: "stored 3 job(s) for quiet\n", stderr: "" })
      const status = yield* garivini("status", ...connect)
      assert.strictEqual(status.stderr, "")
      assert.match(status.stdout, /^SHARD +FUNCTION +DUE.*\n1 +quiet +3 +0 +0 /)
      const list = yield* garivini("jobs", "list", ...connect.slice(0, 2))
      assert.strictEqual(list.stderr, "")
      assert.match(list.stdout, /3 job\(s\)\n$/)
      const migrate = yield* garivini("migrate", ...connect.slice(0, 2))
      assert.strictEqual(migrate.stderr, "")
      assert.include(migrate.stdout, "schema applied to SQLite file")
    }))

  it.scopedLive("--log-level, GARIVINI_LOG_LEVEL and the file's log.level bring the INFO lines back", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-level-")
      const db = ["--db", `sqlite:${join(dir, "garivini.db")}`]
      assert.match((yield* garivini("jobs", "list", ...db, "--log-level", "info")).stderr, OPENED)
      assert.match((yield* gariviniWithEnv({ GARIVINI_LOG_LEVEL: "info" }, "jobs", "list", ...db)).stderr, OPENED)
      const file = join(dir, "garivini.yaml")
      writeFileSync(file, "log: { level: debug }\n")
      assert.match((yield* garivini("jobs", "list", ...db, "--config", file)).stderr, OPENED)
      // The flag wins over the variable.
      const flagWins = yield* gariviniWithEnv(
        { GARIVINI_LOG_LEVEL: "info" },
        "jobs",
        "list",
        ...db,
        "--log-level",
        "error"
      )
      assert.strictEqual(flagWins.stderr, "")
      const bad = yield* gariviniWithEnv({ GARIVINI_LOG_LEVEL: "loud" }, "jobs", "list", ...db)
      assert.strictEqual(bad.code, 2)
      assert.include(bad.stderr, "invalid configuration GARIVINI_LOG_LEVEL")
    }))
})
