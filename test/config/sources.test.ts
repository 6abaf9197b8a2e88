// Where a setting comes from (src/cli/sources.ts): flag > GARIVINI_* variable > config file
// (YAML or JSON) > default, key by key; a bad value names its source; passwords stay redacted.
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { inspect } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { ConfigError, ConfigProvider, Duration, Effect, Option, Redacted, Schema } from "effect"
import { keys, loadSources, resolve } from "../../src/cli/config.js"
import { driverKeys, resolveDriver } from "../../src/cli/driver.js"
import { embeddedKeys, resolveEmbedded } from "../../src/cli/gearmand.js"
import { environment, key, listKey, NumberText, read, type Sources } from "../../src/cli/sources.js"
import { tempDir } from "../support/files.js"
import { withEnv } from "../support/env.js"

const noFlags = { config: Option.none(), db: [], gearmand: [], logFormat: Option.none() }

/** Every variable these tests touch, unset: a developer's shell must not change what they see. */
const clean = Object.fromEntries(
  Object.keys(process.env).filter((k) => k.startsWith("GARIVINI_") && !k.startsWith("GARIVINI_TEST_")).map((
    k
  ) => [k, undefined])
)

const fromMaps = (vars: Record<string, string>, file: unknown): Sources => ({
  env: environment(vars),
  file: ConfigProvider.fromJson(file),
  path: "c.yaml"
})

describe("read: one key from its sources", () => {
  const size = key("GARIVINI_BATCH_MAX_SIZE", "queueRunner.batchMaxSize", NumberText)
  const file = { queueRunner: { batchMaxSize: 300 } }

  it.effect("flag > variable > file > nothing", () =>
    Effect.gen(function*() {
      const env = { GARIVINI_BATCH_MAX_SIZE: "200" }
      assert.deepStrictEqual(yield* read(fromMaps(env, file), size, Option.some(100)), Option.some(100))
      assert.deepStrictEqual(yield* read(fromMaps(env, file), size), Option.some(200))
      assert.deepStrictEqual(yield* read(fromMaps({}, file), size), Option.some(300))
      assert.deepStrictEqual(yield* read(fromMaps({}, {}), size), Option.none())
    }))

  it.effect("a blank variable counts as unset; a bad one names the variable, a bad file value its key and file", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* read(fromMaps({ GARIVINI_BATCH_MAX_SIZE: " " }, file), size), Option.some(300))
      const fromEnv = yield* Effect.flip(read(fromMaps({ GARIVINI_BATCH_MAX_SIZE: "lots" }, file), size))
      assert.strictEqual(fromEnv.message, "invalid configuration GARIVINI_BATCH_MAX_SIZE: \"lots\" is not a number")
      assert.isTrue(ConfigError.isConfigError(fromEnv.cause), "the Config's error is kept as the cause")
      const fromFile = yield* Effect.flip(read(fromMaps({}, { queueRunner: { batchMaxSize: "x" } }), size))
      assert.strictEqual(fromFile.field, "queueRunner.batchMaxSize (in c.yaml)")
    }))

  it.effect("a list: comma or space separated in the variable, an array in the file", () =>
    Effect.gen(function*() {
      const servers = listKey("GARIVINI_GEARMAND", "gearmand", Schema.String)
      const file = { gearmand: ["f:1", "f:2"] }
      assert.deepStrictEqual(
        yield* read(fromMaps({ GARIVINI_GEARMAND: "e:1, e:2 e:3" }, file), servers),
        Option.some(["e:1", "e:2", "e:3"])
      )
      assert.deepStrictEqual(yield* read(fromMaps({}, file), servers), Option.some(["f:1", "f:2"]))
    }))
})

describe("resolve: precedence per key, from YAML and JSON files", () => {
  const files = {
    yaml: [
      "gearmand: [g-file:4730]",
      "queueRunner: { batchMaxSize: 500, lease: 120, queueWatermarkDepth: 7 }",
      "controller: { concurrency: 3, timeout: 60 }",
      "log: { format: json }"
    ].join("\n"),
    json: JSON.stringify({
      gearmand: ["g-file:4730"],
      queueRunner: { batchMaxSize: 500, lease: 120, queueWatermarkDepth: 7 },
      controller: { concurrency: 3, timeout: 60 },
      log: { format: "json" }
    })
  }

  for (const [kind, text] of Object.entries(files)) {
    it.scoped(`${kind}: the file where nothing else says; the variable over it; the flag over both; defaults under all`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("garivini-sources-")
        const path = join(dir, `c.${kind}`)
        writeFileSync(path, text)
        const config = Option.some(path)

        const fileOnly = yield* withEnv(clean, resolve({ ...noFlags, config }))
        assert.deepStrictEqual(
          [fileOnly.gearmand, fileOnly.queueRunner.batchMaxSize, fileOnly.controller.concurrency, fileOnly.logFormat],
          [["g-file:4730"], 500, 3, "json"]
        )
        assert.strictEqual(Duration.toSeconds(fileOnly.controller.timeout!), 60)

        // Per key: the variables given win, the file still gives the others.
        const env = yield* withEnv(
          {
            ...clean,
            GARIVINI_CONFIG: path,
            GARIVINI_GEARMAND: "g-env:1",
            GARIVINI_BATCH_MAX_SIZE: "200",
            GARIVINI_LOG_FORMAT: "logfmt"
          },
          resolve(noFlags)
        )
        assert.deepStrictEqual(
          [env.gearmand, env.queueRunner.batchMaxSize, env.logFormat, env.controller.concurrency],
          [["g-env:1"], 200, "logfmt", 3]
        )
        assert.strictEqual(env.queueRunner.queueWatermarkDepth, 7, "a key no variable gives comes from the file")

        const flags = yield* withEnv(
          { ...clean, GARIVINI_GEARMAND: "g-env:1", GARIVINI_BATCH_MAX_SIZE: "200", GARIVINI_LOG_FORMAT: "logfmt" },
          resolve({
            ...noFlags,
            config,
            gearmand: ["[::1]:4731"],
            batchMaxSize: Option.some(100),
            logFormat: Option.some("pretty" as const)
          })
        )
        assert.deepStrictEqual([flags.gearmand, flags.queueRunner.batchMaxSize, flags.logFormat], [
          ["[::1]:4731"],
          100,
          "pretty"
        ])
        assert.strictEqual(flags.controller.concurrency, 3)

        const defaults = yield* withEnv(clean, resolve(noFlags))
        assert.deepStrictEqual(
          [defaults.gearmand, defaults.gearmandGiven, defaults.queueRunner.batchMaxSize, defaults.controller.timeout],
          [["127.0.0.1:4730"], false, undefined, undefined],
          "nothing given: the roles' own defaults (src/roles/defaults.ts) apply"
        )
      }))
  }

  it.scoped("the statement timeout: flag over variable over file, none by default, zero refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-sources-")
      const path = join(dir, "c.yaml")
      writeFileSync(path, "storage:\n  statementTimeout: 4\n")
      const config = Option.some(path)
      const seconds = (s: { readonly statementTimeout?: Duration.Duration | undefined }) =>
        s.statementTimeout === undefined ? undefined : Duration.toSeconds(s.statementTimeout)
      assert.strictEqual(seconds(yield* withEnv(clean, resolve({ ...noFlags, config }))), 4)
      const env = { ...clean, GARIVINI_STATEMENT_TIMEOUT: "2.5" }
      assert.strictEqual(seconds(yield* withEnv(env, resolve({ ...noFlags, config }))), 2.5)
      const flag = resolve({ ...noFlags, config, statementTimeout: Option.some(1) })
      assert.strictEqual(seconds(yield* withEnv(env, flag)), 1)
      assert.strictEqual(seconds(yield* withEnv(clean, resolve(noFlags))), undefined, "the storage's own default")
      const zero = yield* Effect.flip(withEnv({ ...clean, GARIVINI_STATEMENT_TIMEOUT: "0" }, resolve(noFlags)))
      assert.strictEqual(zero.field, "storage.statementTimeout")
    }))

  it.effect("every key of the table has a variable or a file key, and variables are GARIVINI_*", () =>
    Effect.sync(() => {
      for (const [name, k] of Object.entries(keys)) {
        assert.isTrue(k.env !== undefined || k.file !== undefined, name)
        if (k.env !== undefined) assert.match(k.env.name, /^GARIVINI_[A-Z_]+$/, name)
      }
    }))
})

describe("secrets", () => {
  it.scoped("a database password from a variable or the file is Redacted and never printed", () =>
    Effect.gen(function*() {
      const secret = "S3cr3t-pw"
      const dir = yield* tempDir("garivini-sources-secret-")
      const path = join(dir, "c.json")
      writeFileSync(path, JSON.stringify({ db: [{ url: `mysql://u:${secret}@db-file/jobs`, id: 4 }] }))
      const fromFile = yield* withEnv(clean, resolve({ ...noFlags, config: Option.some(path) }))
      const fromEnv = yield* withEnv(
        { ...clean, GARIVINI_DB: `mysql://u:${secret}@db-env/jobs` },
        resolve({ ...noFlags, config: Option.some(path) })
      )
      assert.deepStrictEqual(fromFile.shards.map((s) => [s.id, s.host]), [[4, "db-file"]])
      assert.deepStrictEqual(fromEnv.shards.map((s) => s.host), ["db-env"], "the variable over the file")
      for (const settings of [fromFile, fromEnv]) {
        assert.isTrue(Redacted.isRedacted(settings.shards[0]!.password))
        assert.strictEqual(Redacted.value(settings.shards[0]!.password), secret)
        assert.notInclude(JSON.stringify(settings), secret)
        assert.notInclude(inspect(settings, { depth: 10 }), secret)
        assert.notInclude(String(settings.shards[0]!.password), secret)
      }
      // A bad URL holding the password: the error names the part, never its text.
      const bad = yield* withEnv(
        { ...clean, GARIVINI_DB: `mysql://u:${secret}%zz@h/jobs` },
        Effect.flip(resolve(noFlags))
      )
      assert.strictEqual(bad.field, "db")
      assert.notInclude(bad.message, secret)
    }))
})

describe("garivini driver resolves like every other command", () => {
  it.scoped("flag > GARIVINI_* > the Driver's file > default", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-sources-driver-")
      const path = join(dir, "driver.yml")
      writeFileSync(
        path,
        "modules: [./w.mjs]\nserver: f1,[::1]:4731\ninterval: 9\nmax_idle_time: 4\nmax_processes: 50\n"
      )
      const none = {
        module: [],
        config: Option.some(path),
        server: Option.none(),
        consolePort: Option.none(),
        consoleHost: Option.none(),
        consoleSocket: Option.none(),
        interval: Option.none(),
        maxIdleTime: Option.none(),
        loglevel: Option.none(),
        pidFile: Option.none(),
        logFormat: Option.none(),
        metricsListen: Option.none()
      }
      const file = yield* withEnv(clean, resolveDriver(none))
      assert.deepStrictEqual(file.options.servers, ["f1:4730", "[::1]:4731"])
      assert.deepStrictEqual(
        [file.options.interval, file.options.maxIdleTime, file.options.maxProcesses, file.options.consolePort],
        [9, 4, 50, undefined]
      )
      const env = yield* withEnv(
        {
          ...clean,
          GARIVINI_GEARMAND: "e1:1",
          GARIVINI_DRIVER_INTERVAL: "2",
          GARIVINI_DRIVER_MAX_PROCESSES: "60",
          GARIVINI_DRIVER_CONSOLE_HOST: "[::1]"
        },
        resolveDriver(none)
      )
      assert.deepStrictEqual(
        [env.options.servers, env.options.interval, env.options.maxProcesses, env.options.consoleHost],
        [["e1:1"], 2, 60, "::1"]
      )
      assert.strictEqual(env.options.maxIdleTime, 4, "a key no variable gives comes from the file")
      const flag = yield* withEnv(
        { ...clean, GARIVINI_GEARMAND: "e1:1", GARIVINI_DRIVER_INTERVAL: "2" },
        resolveDriver({ ...none, server: Option.some("[::1]:4732"), interval: Option.some(1) })
      )
      assert.deepStrictEqual([flag.options.servers, flag.options.interval], [["[::1]:4732"], 1])
      const bad = yield* withEnv({ ...clean, GARIVINI_DRIVER_MAX_PROCESSES: "0" }, Effect.flip(resolveDriver(none)))
      assert.strictEqual(bad.field, "GARIVINI_DRIVER_MAX_PROCESSES")
      const badServer = yield* withEnv({ ...clean, GARIVINI_GEARMAND: "h:0" }, Effect.flip(resolveDriver(none)))
      assert.include(badServer.message, "port 0")
    }))
})

describe("the embedded job server's flags", () => {
  it.scoped("flag > GARIVINI_* > the file's embedded section > default; --listen takes [::1]:PORT", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-sources-embedded-")
      const path = join(dir, "c.yaml")
      writeFileSync(path, "embedded: { listen: '[::1]:4740', maxQueue: 5, maxConnections: 7 }\n")
      const none = {
        listen: Option.none(),
        maxQueue: Option.none(),
        maxQueueBytes: Option.none(),
        maxTotalBytes: Option.none(),
        maxPacket: Option.none(),
        maxBacklog: Option.none(),
        maxInputBytes: Option.none(),
        maxConnections: Option.none()
      }
      const fromFile = yield* withEnv(
        { ...clean, GARIVINI_CONFIG: path },
        Effect.flatMap(loadSources(Option.none()), (from) => resolveEmbedded(none, from))
      )
      assert.deepStrictEqual([fromFile.host, fromFile.port, fromFile.maxQueue, fromFile.maxConnections], [
        "::1",
        4740,
        5,
        7
      ])
      const fromEnv = yield* withEnv(
        { ...clean, GARIVINI_CONFIG: path, GARIVINI_MAX_QUEUE: "6", GARIVINI_LISTEN: "4741" },
        Effect.flatMap(loadSources(Option.none()), (from) => resolveEmbedded(none, from))
      )
      assert.deepStrictEqual([fromEnv.host, fromEnv.port, fromEnv.maxQueue, fromEnv.maxConnections], [
        "127.0.0.1",
        4741,
        6,
        7
      ])
      const fromFlags = yield* withEnv(
        { ...clean, GARIVINI_CONFIG: path, GARIVINI_MAX_QUEUE: "6" },
        Effect.flatMap(
          loadSources(Option.none()),
          (from) => resolveEmbedded({ ...none, maxQueue: Option.some(8), listen: Option.some("0") }, from)
        )
      )
      assert.deepStrictEqual([fromFlags.port, fromFlags.maxQueue], [0, 8])
      const defaults = yield* withEnv(clean, resolveEmbedded(none))
      assert.deepStrictEqual([defaults.host, defaults.port, defaults.maxQueue], ["127.0.0.1", 4730, 1_000_000])
      const bad = yield* withEnv({ ...clean, GARIVINI_LISTEN: "::1:4730" }, Effect.flip(resolveEmbedded(none)))
      assert.strictEqual(bad.field, "listen")
      assert.include(bad.message, "put it in brackets")
    }))
})

describe("docs/operations.md", () => {
  it("names every GARIVINI_* variable a command reads", () => {
    const doc = readFileSync("docs/operations.md", "utf8")
    const names = [keys, embeddedKeys, driverKeys].flatMap((table) =>
      Object.values(table).flatMap((k: { readonly env?: { readonly name: string } | undefined }) =>
        k.env === undefined ? [] : [k.env.name]
      )
    )
    assert.isAbove(names.length, 30)
    for (const name of names) assert.include(doc, `\`${name}\``, name)
  })
})
