// The built `garivini` command, run as an operator would, against the local MariaDB.
import { execFile } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { adminQuery, mysqlHost, mysqlPort } from "./support/mysql.js"

const garivini = (...args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    execFile("node", ["bin/garivini.js", ...args], { env: { ...process.env, GARIVINI_DB: "" } }, (error, stdout, stderr) => {
      resume(Effect.succeed({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr }))
    })
  })

describe("garivini CLI", () => {
  it.scopedLive("migrate creates the database, inject stores jobs, jobs list shows them", () =>
    Effect.gen(function*() {
      const database = `garivini_test_cli_${process.pid}`
      yield* Effect.acquireRelease(Effect.void, () => adminQuery(`DROP DATABASE IF EXISTS \`${database}\``))
      const db = `mysql://root@${mysqlHost}:${mysqlPort}/${database}`
      const migrated = yield* garivini("migrate", "--db", db)
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      assert.include(migrated.stdout, `schema applied to 1 shard(s): 1=${database}`)
      assert.strictEqual((yield* garivini("migrate", "--db", db)).code, 0)
      const injected = yield* garivini("inject", "--db", db, "--count", "3", "--function", "resize", "--arg", "img-1")
      assert.strictEqual(injected.code, 0, injected.stderr)
      assert.include(injected.stdout, "stored 3 job(s) for resize")
      const listed = yield* garivini("jobs", "list", "--db", db, "--json")
      const jobs = listed.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      assert.deepStrictEqual(jobs.map((j) => [j.handle, j.funcname, j.state, Buffer.from(j.arg, "base64").toString()]), [
        ["1:1", "resize", "due", "img-1"],
        ["1:2", "resize", "due", "img-1"],
        ["1:3", "resize", "due", "img-1"]
      ])
      const table = yield* garivini("jobs", "list", "--db", db, "--limit", "2")
      assert.include(table.stdout, "HANDLE")
      assert.include(table.stdout, "2 job(s) (more: --after 1:2)")
      const page2 = yield* garivini("jobs", "list", "--db", db, "--after", "1:2", "--json")
      assert.strictEqual(page2.stdout.split("\n").filter((l) => l.startsWith("{")).length, 1)
    }))

  it.scopedLive("bad configuration and dead shards end in one clear line, exit 1, no password", () =>
    Effect.gen(function*() {
      const badUrl = yield* garivini("migrate", "--db", "postgres://u:hunter2@h/db")
      assert.strictEqual(badUrl.code, 1)
      assert.strictEqual(badUrl.stderr.trim(), "garivini: invalid configuration db: scheme postgres: is not mysql:")
      const dead = yield* garivini("inject", "--db", "mysql://u:hunter2@127.0.0.1:1/db")
      assert.strictEqual(dead.code, 1)
      assert.match(dead.stderr.trim(), /^garivini: storage unavailable: no shard could be reached \(shard 1: connect ECONNREFUSED/)
      assert.notInclude(dead.stdout + dead.stderr, "hunter2")
    }))
})
