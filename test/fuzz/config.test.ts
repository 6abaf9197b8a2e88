// Property suite for configuration input (src/cli/config.ts, src/storage/targets.ts, the Driver's file):
// random config files (YAML and JSON), database URLs, job server addresses and command-line
// values give settings or a one-line ConfigInvalid, never a throw or a stack trace, and a
// rejected URL never echoes its password.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either, Exit, FastCheck as fc, Option, Redacted } from "effect"
import { stringify as toYaml } from "yaml"
import { checkServer, FileConfig, readConfigFile, resolve } from "../../src/cli/config.js"
import { DriverFile, parseServers } from "../../src/cli/driver.js"
import { parseShardUrl, parseSqliteTarget } from "../../src/storage/targets.js"
import { ConfigInvalid } from "../../src/errors.js"
import { parseListen } from "../../src/jobserver/tcpServer.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import { tempDir } from "../support/files.js"
import { check } from "../support/fuzz.js"
import { garivini } from "../support/cli.js"

/** A rejection as the CLI prints it: one line, naming what is wrong, no stack. */
const oneLine = (error: unknown) => {
  assert.instanceOf(error, ConfigInvalid)
  const message = (error as ConfigInvalid).message
  assert.notInclude(message, "\n", `not one line: ${message}`)
  assert.notMatch(message, /\bat .*:\d+:\d+/, "a stack frame in the message")
}

const scalar = fc.oneof(
  fc.constantFrom(
    0,
    -1,
    1.5,
    1e300,
    65536,
    "",
    "x",
    "mysql://root@127.0.0.1/db",
    "sqlite:",
    "sqlite:./x.db",
    "127.0.0.1:4730",
    "pretty",
    null,
    true
  ),
  fc.integer(),
  fc.string({ maxLength: 12 })
)
const value = fc.oneof(
  scalar,
  fc.array(scalar, { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), scalar, { maxKeys: 3 })
)
const section = (keys: ReadonlyArray<string>) =>
  fc.record(Object.fromEntries(keys.map((k) => [k, value])), { requiredKeys: [] })
/** Mostly the file's own keys with random values; sometimes anything. */
const configShaped = fc.record({
  db: fc.oneof(
    value,
    fc.array(fc.oneof(scalar, fc.record({ url: scalar, id: scalar }, { requiredKeys: [] })), { maxLength: 3 })
  ),
  gearmand: value,
  queueRunner: section(["batchMaxSize", "batchRunSleep", "queueWatermarkDepth", "lease", "deferFor", "typo"]),
  injector: section(["lease", "queueWatermarkDepth", "concurrency"]),
  controller: section(["concurrency", "timeout"]),
  log: section(["format"]),
  server: scalar,
  console_port: scalar,
  job_runtime_attributes: fc.dictionary(fc.string({ maxLength: 8 }), section(["min_processes", "max_processes"]), {
    maxKeys: 2
  }),
  worker_options: value,
  unknown: value
}, { requiredKeys: [] })
const yamlSpecials = fc.constantFrom(
  "a: &x [*x]",
  "db: *nowhere",
  "!!binary AAAA",
  "!custom x",
  "---\n---\n",
  "db: [",
  "{",
  "? [a]\n: b",
  "<<: *x",
  "db: !!js/function 'f'",
  "db:\n  - a\n  - b\nb: 1\nb: 2",
  "~",
  "[]",
  "\"\\u\"",
  "\t- x",
  "x: y: z",
  "%YAML 1.1\n---\nx: 1",
  "a: " + "[".repeat(200) + "]".repeat(200),
  "x: " + Array.from({ length: 120 }, (_, i) => `&a${i} [*a${i > 0 ? i - 1 : 0}]`).join(" ")
)
const document = fc.oneof(
  fc.string({ maxLength: 80 }),
  yamlSpecials,
  configShaped.map((c) => toYaml(c)),
  configShaped.map((c) => JSON.stringify(c)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? ""),
  fc.tuple(configShaped, fc.nat(), fc.string({ maxLength: 3 })).map(([c, at, junk]) => {
    const text = toYaml(c)
    const i = at % (text.length + 1)
    return text.slice(0, i) + junk + text.slice(i)
  })
)

const urlPart = fc.oneof(
  fc.constantFrom("%", "%zz", "%E0%A4%A", "%25", "@", ":", "/", "?", "#", "id=", "[", "]", " ", "\u0000", "é"),
  fc.string({ maxLength: 5 })
)
const urlArb = fc.tuple(
  fc.constantFrom("mysql://", "mysql:", "http://", "sqlite:", ""),
  fc.array(urlPart, { maxLength: 6 }),
  fc.constantFrom("", "@h", "@h:3306", "@[::1]:3306"),
  fc.array(urlPart, { maxLength: 4 })
)
  .map(([scheme, auth, host, path]) => `${scheme}${auth.join("")}${host}/${path.join("")}`)

describe("fuzz: configuration input", () => {
  it.scoped("random config files (YAML and JSON) give settings or a one-line ConfigInvalid", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-fuzz-config-")
      check(
        600,
        fc.property(document, fc.boolean(), (text, json) => {
          const path = join(dir, json ? "c.json" : "c.yaml")
          writeFileSync(path, text)
          for (const schema of [FileConfig, DriverFile] as const) {
            const result = readConfigFile(path, schema as typeof FileConfig)
            if (Either.isLeft(result)) oneLine(result.left)
          }
        })
      )
    }))

  it("database URLs: a shard or a one-line ConfigInvalid that never shows the password", () =>
    check(
      2000,
      fc.property(urlArb, fc.boolean(), (url, withSecret) => {
        const input = withSecret ? url.replace(/^mysql:\/\//, "mysql://u:SeCrEt99@") : url
        const result = parseShardUrl(input, 1)
        if (Either.isLeft(result)) {
          oneLine(result.left)
          assert.notInclude(result.left.message, "SeCrEt99")
        } else {
          assert.isTrue(Number.isSafeInteger(result.right.id) && result.right.id > 0)
          assert.isTrue(Number.isInteger(result.right.port) && result.right.port > 0 && result.right.port < 65536)
        }
        const sqlite = parseSqliteTarget(input)
        if (Either.isLeft(sqlite)) oneLine(sqlite.left)
      })
    ))

  it("job server addresses and --listen values: an address or a rejection, never a throw", () =>
    check(
      2000,
      fc.property(
        fc.array(fc.oneof(urlPart, fc.constantFrom("127.0.0.1", ":", "4730", "65536", "99999", "[::1]", ",")), {
          maxLength: 6
        }).map((p) => p.join("")),
        (text) => {
          const server = checkServer(text)
          if (Either.isLeft(server)) oneLine(server.left)
          const servers = parseServers(text)
          if (Either.isLeft(servers)) oneLine(servers.left)
          const listen = parseListen(text)
          if (listen !== undefined)
            assert.isTrue(Number.isInteger(listen.port) && listen.port >= 0 && listen.port <= 65535)
        }
      )
    ))

  it("command-line values resolve to settings or a one-line ConfigInvalid", () =>
    check(
      400,
      fc.property(
        fc.array(
          fc.oneof(
            urlArb,
            fc.constantFrom("sqlite:./x.db", "mysql://root@127.0.0.1/a", "mysql://root@127.0.0.1/a?id=1")
          ),
          { maxLength: 3 }
        ),
        fc.array(fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom("127.0.0.1:4730", "h:0", "h:65536")), {
          maxLength: 2
        }),
        fc.option(fc.oneof(fc.integer(), fc.double()), { nil: undefined }),
        (dbs, servers, n) => {
          const number = n === undefined ? Option.none() : Option.some(n)
          const exit = Effect.runSyncExit(resolve({
            config: Option.none(),
            db: dbs.map((u) => Redacted.make(u)),
            gearmand: servers,
            logFormat: Option.none(),
            batchMaxSize: number,
            batchRunSleep: number,
            lease: number,
            controllerConcurrency: number,
            controllerTimeout: number,
            injectorConcurrency: number
          }))
          if (Exit.isFailure(exit)) {
            const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            assert.isDefined(failure, `not a typed failure: ${String(exit.cause)}`)
            oneLine(failure)
            return
          }
          // Resolved settings are usable: no role refuses them later, no lease is under a second.
          assert.isTrue(Either.isRight(QueueRunner.settings(exit.value.queueRunner)), JSON.stringify(n))
          const lease = exit.value.injector.lease
          assert.isTrue(lease === undefined || Duration.toMillis(Duration.decode(lease)) >= 1000)
        }
      )
    ))
})

describe("configuration regressions (shrunk by the fuzz suite)", () => {
  it("a stray % in a database URL is a ConfigInvalid, not a thrown URIError", () => {
    for (const url of ["mysql://h/%zz", "mysql://%zz@h/db", "mysql://u:%E0%A4%A@h/db"]) {
      const result = parseShardUrl(url, 1)
      assert.isTrue(Either.isLeft(result), url)
      if (Either.isLeft(result)) oneLine(result.left)
    }
  })

  it.scoped("a lease under a second is refused for every role, from a flag or the file's injector section", () =>
    Effect.gen(function*() {
      const none = { config: Option.none(), db: [], gearmand: [], logFormat: Option.none() }
      const flag = yield* Effect.flip(resolve({ ...none, lease: Option.some(0) }))
      assert.strictEqual(flag.field, "queueRunner.lease")
      const dir = yield* tempDir("garivini-fuzz-lease-")
      writeFileSync(join(dir, "c.yaml"), "injector:\n  lease: 0.2\n")
      const file = yield* Effect.flip(resolve({ ...none, config: Option.some(join(dir, "c.yaml")) }))
      assert.strictEqual(file.field, "injector.lease")
    }))

  it.live("the CLI answers a bad URL and a bad config file with one line and exit code 2", () =>
    Effect.gen(function*() {
      const url = yield* garivini("status", "--db", "mysql://u:SeCrEt99@h/%zz")
      assert.strictEqual(url.code, 2, url.stderr)
      assert.strictEqual(url.stderr.trim().split("\n").length, 1, url.stderr)
      assert.notInclude(url.stderr, "SeCrEt99")
      const dir = yield* Effect.scoped(Effect.gen(function*() {
        const d = yield* tempDir("garivini-fuzz-cli-")
        writeFileSync(join(d, "bad.yaml"), "db: [\nqueueRunner: &a [*a]")
        const file = yield* garivini("status", "--config", join(d, "bad.yaml"))
        assert.strictEqual(file.code, 2, file.stderr)
        assert.strictEqual(file.stderr.trim().split("\n").length, 1, file.stderr)
        return d
      }))
      assert.isString(dir)
    }))
})
