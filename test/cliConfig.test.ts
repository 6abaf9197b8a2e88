// Configuration precedence: flags, then environment, then the config file, then defaults.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option, Redacted } from "effect"
import { resolve } from "../src/cli/config.js"
import { v8FlagGiven } from "../src/cli/heap.js"
import { withEnv } from "./support/env.js"

const noFlags = { config: Option.none(), db: [], gearmand: [], logFormat: Option.none() }

describe("configuration", () => {
  const file = `/tmp/garivini-config-test-${process.pid}.yaml`
  writeFileSync(
    file,
    [
      "db:",
      "  - mysql://file@db-file/jobs",
      "  - { url: 'mysql://file@db-file2/jobs', id: 7 }",
      "gearmand: [g-file:4730]",
      "queueRunner: { batchMaxSize: 500, lease: 120, shardRetryMax: 0.5 }",
      "controller: { concurrency: 3, maxAttempts: 9 }",
      "log: { format: json }"
    ].join("\n")
  )
  const clear = {
    GARIVINI_DB: undefined,
    GARIVINI_GEARMAND: undefined,
    GARIVINI_CONFIG: undefined,
    GARIVINI_BATCH_MAX_SIZE: undefined,
    GARIVINI_LOG_FORMAT: undefined
  }

  it.effect("the file is read when nothing else says otherwise", () =>
    withEnv(
      clear,
      Effect.gen(function*() {
        const s = yield* resolve({ ...noFlags, config: Option.some(file) })
        assert.deepStrictEqual(s.shards.map((x) => [x.id, x.host, x.user]), [[1, "db-file", "file"], [
          7,
          "db-file2",
          "file"
        ]])
        assert.deepStrictEqual([s.gearmand, s.gearmandGiven, s.logFormat], [["g-file:4730"], true, "json"])
        assert.strictEqual(s.queueRunner.batchMaxSize, 500)
        assert.strictEqual(Duration.toSeconds(s.queueRunner.lease!), 120)
        assert.strictEqual(Duration.toMillis(s.queueRunner.shardRetryMax!), 500)
        assert.strictEqual(Duration.toSeconds(s.injector.lease!), 120, "the Injector's lease follows the runner's")
        assert.strictEqual(s.controller.concurrency, 3)
        assert.strictEqual(s.controller.maxAttempts, 9)
      })
    ))

  it.effect("the Controller's max attempts: flag over GARIVINI_CONTROLLER_MAX_ATTEMPTS over the file; below 1 refused", () =>
    withEnv(
      { ...clear, GARIVINI_CONTROLLER_MAX_ATTEMPTS: "4" },
      Effect.gen(function*() {
        assert.strictEqual((yield* resolve({ ...noFlags, config: Option.some(file) })).controller.maxAttempts, 4)
        const flagged = yield* resolve({ ...noFlags, controllerMaxAttempts: Option.some(2) })
        assert.strictEqual(flagged.controller.maxAttempts, 2)
        const zero = yield* Effect.flip(resolve({ ...noFlags, controllerMaxAttempts: Option.some(0) }))
        assert.include(zero.message, "controller.maxAttempts")
      })
    ))

  it.effect("the file's functions and schedules are checked and kept for the QueueRunner to write", () =>
    withEnv(
      clear,
      Effect.gen(function*() {
        const flowFile = `/tmp/garivini-config-flow-${process.pid}.yaml`
        const write = (lines: ReadonlyArray<string>) => writeFileSync(flowFile, lines.join("\n"))
        write([
          "functions:",
          "  api: { rate: 50/s }",
          "  reports: { paused: true, rate: 600/min, burst: 20 }",
          "  mail: { concurrency: 5 }",
          "schedules:",
          "  nightly: { cron: '0 0 3 * * *', function: reports, tz: Europe/Paris, missed: run-once }"
        ])
        const s = yield* resolve({ ...noFlags, config: Option.some(flowFile) })
        assert.deepStrictEqual(s.flow.functions, [
          { funcname: "api", patch: { paused: undefined, rate: { count: 50, periodMs: 1000, burst: 50 } } },
          { funcname: "reports", patch: { paused: true, rate: { count: 600, periodMs: 60_000, burst: 20 } } },
          { funcname: "mail", patch: { paused: undefined, rate: undefined, concurrency: 5 } }
        ])
        assert.deepStrictEqual(s.flow.schedules, [{
          name: "nightly",
          cron: "0 0 3 * * *",
          funcname: "reports",
          arg: undefined,
          timezone: "Europe/Paris",
          missed: "run-once"
        }])
        write(["functions:", "  api: { rate: lots }"])
        const badRate = yield* Effect.flip(resolve({ ...noFlags, config: Option.some(flowFile) }))
        assert.include(badRate.message, "functions.api.rate")
        write(["functions:", "  api: { concurrency: 2000000 }"])
        const badConcurrency = yield* Effect.flip(resolve({ ...noFlags, config: Option.some(flowFile) }))
        assert.include(badConcurrency.message, "functions.api.concurrency")
        write(["schedules:", "  x: { cron: 'every day', function: f }"])
        const badCron = yield* Effect.flip(resolve({ ...noFlags, config: Option.some(flowFile) }))
        assert.include(badCron.message, "schedules.x")
      })
    ))

  it.effect("the environment overrides the file; flags override both", () =>
    withEnv(
      {
        ...clear,
        GARIVINI_CONFIG: file,
        GARIVINI_DB: "mysql://env@db-env/jobs",
        GARIVINI_GEARMAND: "g-env:1",
        GARIVINI_BATCH_MAX_SIZE: "200"
      },
      Effect.gen(function*() {
        const fromEnv = yield* resolve(noFlags)
        assert.deepStrictEqual(
          [fromEnv.shards.map((x) => x.host), fromEnv.gearmand, fromEnv.queueRunner.batchMaxSize],
          [["db-env"], ["g-env:1"], 200]
        )
        const fromFlags = yield* resolve({
          ...noFlags,
          db: [Redacted.make("mysql://flag:secret@db-flag/jobs")],
          gearmand: ["g-flag:2"],
          batchMaxSize: Option.some(100),
          logFormat: Option.some("logfmt" as const)
        })
        assert.deepStrictEqual([
          fromFlags.shards.map((x) => x.host),
          fromFlags.gearmand,
          fromFlags.queueRunner.batchMaxSize,
          fromFlags.logFormat
        ], [["db-flag"], ["g-flag:2"], 100, "logfmt"])
        assert.strictEqual(Redacted.value(fromFlags.shards[0]!.password), "secret")
        assert.notInclude(JSON.stringify(fromFlags), "secret")
      })
    ))

  it.effect("defaults: the SQLite file ./garivini.db (embedded) and gearmand on 127.0.0.1:4730", () =>
    withEnv(
      clear,
      Effect.gen(function*() {
        const s = yield* resolve(noFlags)
        assert.deepStrictEqual([s.shards, s.gearmand, s.gearmandGiven], [[], ["127.0.0.1:4730"], false])
        assert.deepStrictEqual([s.sqlite, s.dbGiven], [Option.some(join(process.cwd(), "garivini.db")), false])
      })
    ))

  it.effect("a SQLite file from a flag, the environment or the file; relative paths made absolute", () =>
    withEnv(
      clear,
      Effect.gen(function*() {
        const fromFlag = yield* resolve({ ...noFlags, db: [Redacted.make("sqlite:./garivini.db")] })
        assert.deepStrictEqual([fromFlag.shards, fromFlag.sqlite, fromFlag.dbGiven], [
          [],
          Option.some(join(process.cwd(), "garivini.db")),
          true
        ])
        const fromEnv = yield* withEnv({ GARIVINI_DB: "sqlite:/var/lib/garivini/jobs.db" }, resolve(noFlags))
        assert.deepStrictEqual([fromEnv.shards, fromEnv.sqlite, fromEnv.dbGiven], [
          [],
          Option.some("/var/lib/garivini/jobs.db"),
          true
        ])
        const sqliteFile = `/tmp/garivini-config-sqlite-${process.pid}.yaml`
        writeFileSync(sqliteFile, "db: [{ url: 'sqlite:/srv/g.db', id: 1 }]\n")
        assert.deepStrictEqual(
          (yield* resolve({ ...noFlags, config: Option.some(sqliteFile) })).sqlite,
          Option.some("/srv/g.db")
        )
        writeFileSync(sqliteFile, "db: [{ url: 'sqlite:/srv/g.db', id: 2 }]\n")
        assert.include(
          (yield* Effect.flip(resolve({ ...noFlags, config: Option.some(sqliteFile) }))).message,
          "is shard 1"
        )
        // A MySQL shard given explicitly is a given database too.
        assert.isTrue((yield* resolve({ ...noFlags, db: [Redacted.make("mysql://root@h/jobs")] })).dbGiven)
      })
    ))

  it.effect("a bad value names its field", () =>
    withEnv(
      { ...clear, GARIVINI_BATCH_MAX_SIZE: "lots" },
      Effect.gen(function*() {
        const err = yield* Effect.flip(resolve(noFlags))
        assert.strictEqual(err.message, "invalid configuration GARIVINI_BATCH_MAX_SIZE: \"lots\" is not a number")
      })
    ))
})

describe("the roles' heap policy", () => {
  it("a V8 setting given to node (flag or NODE_OPTIONS, either spelling, negated or not) wins over the policy", () => {
    const growing = (argv: ReadonlyArray<string>, options?: string) =>
      v8FlagGiven("heap-growing-percent", argv, options)
    assert.isFalse(growing([], undefined))
    assert.isFalse(growing(["--expose-gc"], "--max-semi-space-size=4"))
    assert.isTrue(growing(["--heap-growing-percent=80"], undefined))
    assert.isTrue(growing([], "--max-semi-space-size=4 --heap_growing_percent=20"))
    assert.isFalse(growing(["--heap-growing-percentage=1"], undefined))
    const pretenuring = (argv: ReadonlyArray<string>, options?: string) =>
      v8FlagGiven("allocation-site-pretenuring", argv, options)
    assert.isTrue(pretenuring(["--allocation-site-pretenuring"], undefined))
    assert.isTrue(pretenuring([], "--no-allocation_site_pretenuring"))
    assert.isTrue(pretenuring(["--noallocation-site-pretenuring"], undefined))
    assert.isFalse(pretenuring(["--heap-growing-percent=50"], undefined))
  })
})
