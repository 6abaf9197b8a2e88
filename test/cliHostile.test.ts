// The built `garivini` command given hostile or careless input: malformed URLs end in one line
// (exit 2), and what exposes jobs or passwords is warned about once at start.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { isLoopback, urlHasPassword } from "../src/cli/exposure.js"
import { layerSqlite, Storage } from "../src/storage/Storage.js"
import { eventually } from "./gearman/gearmand.js"
import { fixture, startDriver } from "./driver/support.js"
import { background, garivini, gariviniWithEnv } from "./support/cli.js"
import { tempDir } from "./support/files.js"

const warnings = (stderr: string, text: string) =>
  stderr.split("\n").filter((l) => l.includes("level=WARN") && l.includes(text))

describe("garivini CLI: hostile input and exposure", () => {
  it.scoped(
    "a malformed %-escape in a DB URL (flag, GARIVINI_DB, config file, a Driver's GARIVINI_DB) is one line and exit 2",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("garivini-hostile-")
        const oneLine = (r: { code: number; stdout: string; stderr: string }, expected: string, what: string) => {
          assert.strictEqual(r.code, 2, `${what}: ${r.stderr}`)
          assert.strictEqual(r.stderr.trim(), expected, what)
          assert.notInclude(r.stdout + r.stderr, "p%zz", what)
        }
        const password = "garivini: invalid configuration db: the password has a malformed %-escape (write % as %25)"
        oneLine(yield* garivini("jobs", "list", "--db", "mysql://u:p%zz@h/db"), password, "--db")
        oneLine(
          yield* garivini("jobs", "list", "--db", "mysql://u%zz:p@h/db"),
          "garivini: invalid configuration db: the user name has a malformed %-escape",
          "user"
        )
        oneLine(
          yield* garivini("jobs", "list", "--db", "mysql://u:p@h/d%zz"),
          "garivini: invalid configuration db: the database name has a malformed %-escape",
          "database"
        )
        oneLine(yield* gariviniWithEnv({ GARIVINI_DB: "mysql://u:p%zz@h/db" }, "status"), password, "GARIVINI_DB")
        const file = join(dir, "bad.yaml")
        writeFileSync(file, "db: ['mysql://u:p%zz@h/db']\n")
        oneLine(yield* garivini("inject", "--config", file), password, "config file")
        oneLine(
          yield* garivini("jobs", "list", "--db", "mysql://u:p@h:0/db"),
          "garivini: invalid configuration db: port 0 is not a port (1-65535)",
          "port 0"
        )
        oneLine(
          yield* garivini("jobs", "list", "--db", "mysql://u:p@h/db?id=1e3"),
          "garivini: invalid configuration db: shard id \"1e3\" is not a positive integer",
          "id"
        )
        // Driver children read GARIVINI_DB for durable jobs: the Driver refuses a bad one at start.
        oneLine(
          yield* gariviniWithEnv(
            { GARIVINI_DB: "mysql://u:p%zz@h/db" },
            "driver",
            "--module",
            fixture("Bare.mjs"),
            "--console-port",
            "0"
          ),
          "garivini: invalid configuration GARIVINI_DB: the password has a malformed %-escape (write % as %25)",
          "driver"
        )
      }),
    60_000
  )

  it.effect("a password given with --db is warned about once; in GARIVINI_DB it is not", () =>
    Effect.gen(function*() {
      // Port 1 refuses at once: the command fails at run time (exit 1) after its warnings.
      const byFlag = yield* garivini("jobs", "list", "--db", "mysql://u:hunter2@127.0.0.1:1/db")
      assert.strictEqual(byFlag.code, 1, byFlag.stderr)
      assert.lengthOf(warnings(byFlag.stderr, "password was given with --db"), 1, byFlag.stderr)
      assert.notInclude(byFlag.stdout + byFlag.stderr, "hunter2")
      const byEnv = yield* gariviniWithEnv({ GARIVINI_DB: "mysql://u:hunter2@127.0.0.1:1/db" }, "jobs", "list")
      assert.strictEqual(byEnv.code, 1, byEnv.stderr)
      assert.lengthOf(warnings(byEnv.stderr, "password"), 0, byEnv.stderr)
      const noPassword = yield* garivini("jobs", "list", "--db", "mysql://u@127.0.0.1:1/db")
      assert.lengthOf(warnings(noPassword.stderr, "password"), 0, noPassword.stderr)
    }), 60_000)

  it.scopedLive(
    "gearmand and up warn once when they listen beyond loopback; not on 127.0.0.1",
    () =>
      Effect.gen(function*() {
        const wide = yield* background("gearmand", "--listen", "0.0.0.0:0")
        yield* eventually(
          Effect.map(wide.errors, (e) => warnings(e, "no authentication").length > 0),
          "the warning",
          20_000
        )
        assert.lengthOf(warnings(yield* wide.errors, "beyond loopback"), 1)
        assert.strictEqual((yield* wide.stop("SIGTERM")).code, 0)

        const local = yield* background("gearmand", "--listen", "127.0.0.1:0")
        yield* eventually(Effect.map(local.errors, (e) => e.includes("job server up")), "the job server", 20_000)
        assert.lengthOf(warnings(yield* local.errors, "beyond loopback"), 0)
        yield* local.stop("SIGTERM")

        const db = `sqlite:${join(yield* tempDir("garivini-hostile-"), "up.db")}`
        const up = yield* background("up", "--listen", "0.0.0.0:0", "--db", db)
        yield* eventually(Effect.map(up.output, (o) => o.includes("garivini up:")), "up to start", 30_000)
        yield* eventually(
          Effect.map(up.errors, (e) => warnings(e, "beyond loopback").length === 1),
          "the warning",
          20_000
        )
        assert.include(yield* up.errors, "the embedded job server listens on 0.0.0.0:")
        assert.strictEqual((yield* up.stop("SIGTERM")).code, 0)
      }),
    90_000
  )

  it.scopedLive("the Driver console warns when it binds beyond loopback", () =>
    Effect.gen(function*() {
      const driver = yield* startDriver([fixture("Bare.mjs")], { console_host: "0.0.0.0" })
      yield* eventually(
        Effect.sync(() => warnings(driver.output(), "the Driver console listens on 0.0.0.0:").length === 1),
        "the warning",
        20_000
      )
    }), 60_000)

  it.scopedLive(
    "jobs retry and delete refuse a job that may be running (leased by our dispatcher, or run_after within a lease of now) unless --force",
    () =>
      Effect.gen(function*() {
        const file = join(yield* tempDir("garivini-hostile-"), "jobs.db")
        const db = `sqlite:${file}`
        const now = Math.floor(Date.now() / 1000)
        // 1:1 claimed by our QueueRunner (leased 30 s, the default); 1:2 as a Perl QueueRunner's claim
        // leaves it (run_after now + 30, no lease mark); 1:3 due; 1:4 scheduled far ahead.
        yield* Effect.scoped(
          Effect.gen(function*() {
            const storage = yield* Storage
            yield* storage.insert(
              [-10, 30, 0, 5000].map((delay, i) => ({
                funcname: "f",
                arg: `${i}`,
                runAfter: now + delay
              }))
            )
            assert.lengthOf(yield* storage.claimDue(1, 1, "30 seconds"), 1)
          }).pipe(Effect.provide(Layer.orDie(layerSqlite({ filename: file }))))
        )
        const runAfter = (handle: string) =>
          Effect.map(garivini("jobs", "show", "--db", db, "--json", handle), (r) =>
            Number(JSON.parse(r.stdout).run_after))

        const refused = yield* garivini("jobs", "retry", "--db", db, "1:1")
        assert.strictEqual(refused.code, 1, refused.stderr)
        assert.match(
          refused.stderr,
          /job 1:1 is dispatched: leased for \d+ s more; .*could run it twice; --force/
        )
        // Our lease mark holds whatever lease the CLI is told.
        assert.strictEqual((yield* garivini("jobs", "retry", "--db", db, "--lease", "5", "1:1")).code, 1)
        assert.isAbove(yield* runAfter("1:1"), now + 20, "the lease is untouched")
        const forced = yield* garivini("jobs", "retry", "--db", db, "--force", "1:1")
        assert.strictEqual(forced.code, 0, forced.stderr)
        assert.isAtMost(yield* runAfter("1:1"), Math.floor(Date.now() / 1000))

        const notRunning = yield* garivini("jobs", "delete", "--db", db, "1:2")
        assert.strictEqual(notRunning.code, 1)
        assert.match(
          notRunning.stderr,
          /job 1:2 may be running right now: .*within a lease \(30 s\).*deleting it would not stop it/
        )
        // No lease mark and a shorter lease configured: 30 s ahead is beyond it, so the job cannot be running.
        assert.include(
          (yield* garivini("jobs", "delete", "--db", db, "--lease", "10", "1:2")).stdout,
          "job 1:2 deleted"
        )

        assert.include((yield* garivini("jobs", "retry", "--db", db, "1:3")).stdout, "job 1:3 is already due")
        assert.include((yield* garivini("jobs", "retry", "--db", db, "1:4")).stdout, "job 1:4 is due")
        assert.include((yield* garivini("jobs", "delete", "--db", db, "1:3")).stdout, "job 1:3 deleted")
      }),
    60_000
  )

  it("loopback is 127.0.0.0/8, ::1 and localhost; a URL's password is seen without decoding it", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "0:0:0:0:0:0:0:1", "localhost", "::ffff:127.0.0.1"])
      assert.isTrue(isLoopback(host), host)
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "db.example.com", "::2", "::ffff:10.0.0.1"])
      assert.isFalse(isLoopback(host), host)
    assert.isTrue(urlHasPassword("mysql://u:p%zz@h/db"))
    assert.isFalse(urlHasPassword("mysql://u@h/db"))
    assert.isFalse(urlHasPassword("sqlite:./garivini.db"))
  })
})
