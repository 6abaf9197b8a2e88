// Declaring workers without processes: attribute precedence, groups, prefixes, runtime
// attributes, module loading, and the console's status layout.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import { parseServers, resolveDriver } from "../../src/cli/driver.js"
import { driverJobs, loadModule, type LoadedModule } from "../../src/driver/attributes.js"
import { statusLines } from "../../src/driver/Console.js"
import { define, job } from "../../src/driver/define.js"
import { crashBackoff, type JobState } from "../../src/driver/Supervisor.js"
import { fixture } from "./support.js"

const ok = () => Effect.succeed("ok")
const module = (definition: ReturnType<typeof define>, name = "My::Workers"): LoadedModule => ({
  path: "/x.mjs",
  name,
  definition
})
const summary = (
  jobs: ReadonlyArray<
    {
      readonly name: string
      readonly min: number
      readonly max: number
      readonly functions: ReadonlyArray<{ readonly registered: string }>
    }
  >
) => jobs.map((j) => `${j.name} ${j.min} ${j.max} ${j.functions.map((f) => f.registered).join(",")}`)

describe("Driver attributes", () => {
  it.effect("defaults min 1 max 1; override > job > default; the default prefix is the module's name", () =>
    Effect.gen(function*() {
      const plain = yield* driverJobs(module(define({ jobs: { a: job({}, ok), b: job({ min: 0, max: 7 }, ok) } })))
      assert.deepStrictEqual(summary(plain), ["My::Workers::a 1 1 My::Workers::a", "My::Workers::b 0 7 My::Workers::b"])
      const sets = yield* driverJobs(module(define({
        prefix: "",
        default: { min: 0, max: 5 },
        override: { max: 2 },
        jobs: { a: job({ max: 9 }, ok), b: job({ min: 1 }, ok) }
      })))
      assert.deepStrictEqual(summary(sets), ["a 0 2 a", "b 1 2 b"])
    }))

  it.effect("a group shares processes; its first min/max wins (0 counts)", () =>
    Effect.gen(function*() {
      const jobs = yield* driverJobs(module(define({
        prefix: "p.",
        jobs: { a: job({ group: "g", min: 0 }, ok), b: job({ group: "g", min: 3, max: 4 }, ok), c: job({}, ok) }
      })))
      assert.deepStrictEqual(summary(jobs), ["p.g 0 4 p.a,p.b", "p.c 1 1 p.c"])
    }))

  it.effect("job_runtime_attributes by job name or by <module>::<group>; max never under min", () =>
    Effect.gen(function*() {
      const definition = define({ prefix: "", jobs: { a: job({}, ok), b: job({ max: 3 }, ok) } })
      const jobs = yield* driverJobs(module(definition, "Mod"), {
        a: { min_processes: 2 },
        "Mod::b": { max_processes: 6 }
      })
      assert.deepStrictEqual(summary(jobs), ["a 2 2 a", "b 1 6 b"])
    }))

  it.effect("bad attributes and modules without a definition are configuration errors", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.either(driverJobs(module(define({ jobs: { a: job({ min: -1 }, ok) } }))))
      assert.isTrue(Either.isLeft(bad) && bad.left._tag === "ConfigInvalid")
      // A function name a job server could not take is refused at the Driver's start, not by each child.
      const badName = yield* Effect.either(driverJobs(module(define({ jobs: { "re size\tx": job({}, ok) } }))))
      assert.isTrue(
        Either.isLeft(badName) && badName.left._tag === "ConfigInvalid" &&
          badName.left.message.includes("no whitespace or control characters")
      )
      const none = yield* Effect.either(loadModule("test/driver/support.ts"))
      assert.isTrue(Either.isLeft(none) && none.left.message.includes("must export one Driver.define"))
      const missing = yield* Effect.either(loadModule("test/driver/fixtures/nope.mjs"))
      assert.isTrue(Either.isLeft(missing) && missing.left.message.includes("cannot load"))
    }))

  it.effect("a module's definition is found and named after its file", () =>
    Effect.gen(function*() {
      const loaded = yield* loadModule(fixture("Bare.mjs"))
      assert.strictEqual(loaded.name, "Bare")
      assert.deepStrictEqual(summary(yield* driverJobs(loaded)), ["bare_echo 0 2 bare_echo", "bare_min 1 2 bare_min"])
    }))
})

describe("Driver console layout and settings", () => {
  const state = (
    name: string,
    min: number,
    max: number,
    processes: number,
    lastrun: number,
    lasterrorMsg = ""
  ): JobState => ({
    job: { name, runtimeKey: name, modulePath: "", moduleName: "", group: name, functions: [], min, max },
    min,
    max,
    lastrun,
    lasterror: lasterrorMsg ? lastrun : 0,
    lasterrorMsg,
    processes: new Map(Array.from({ length: processes }, (_, i) => [i, undefined!])),
    crashes: 0,
    holdUntil: 0,
    startBudget: 0
  })

  it("status pads names right and numbers left to the widest, two spaces apart", () => {
    assert.deepStrictEqual(
      statusLines([state("Long::job_name", 1, 10, 2, 0), state("x", 12, 100, 0, 1795000000, "boom")]),
      [
        "Long::job_name   1   10  2  1970-01-01T00:00:00  1970-01-01T00:00:00  ",
        "x               12  100  0  2026-11-18T11:06:40  2026-11-18T11:06:40  ERROR: boom"
      ]
    )
  })

  it("server lists take the original's host[:port],host[:port] with port 4730 by default", () => {
    assert.deepStrictEqual(parseServers("a,b:4731 c"), Either.right(["a:4730", "b:4731", "c:4730"]))
    assert.isTrue(Either.isLeft(parseServers("a:99999")))
    assert.isTrue(Either.isLeft(parseServers("")))
  })

  it("crash backoff doubles from 250 ms up to 30 s", () => {
    assert.deepStrictEqual([1, 2, 3, 4, 8, 20].map(crashBackoff), [250, 500, 1000, 2000, 30_000, 30_000])
  })

  const flags = (config: string | undefined, module: ReadonlyArray<string> = []) => ({
    module,
    config: Option.fromNullable(config),
    server: Option.none(),
    consolePort: Option.none(),
    consoleHost: Option.none(),
    consoleSocket: Option.none(),
    interval: Option.some(0.5),
    maxIdleTime: Option.none(),
    loglevel: Option.none(),
    pidFile: Option.none(),
    logFormat: Option.none(),
    metricsListen: Option.none()
  })
  const confDir = mkdtempSync(Path.join(tmpdir(), "garivini-driver-conf-"))
  afterAll(() => rmSync(confDir, { recursive: true, force: true }))
  let files = 0
  const file = (text: string) => {
    const path = Path.join(confDir, `driver-${files++}.yml`)
    writeFileSync(path, text)
    return path
  }

  it.effect("settings: the original's keys, flags over the file; unknown keys and no module are errors", () =>
    Effect.gen(function*() {
      const path = file(
        "server: gm1,gm2:4731\nconsole_port: 0\ninterval: 2\nmax_idle_time: 30\nloglevel: debug\nmodules: [a.mjs]\n" +
          "job_runtime_attributes:\n  X::y: { min_processes: 2 }\nworker_options:\n  GLOBAL: { k: 1 }\n"
      )
      const settings = yield* resolveDriver(flags(path))
      assert.deepStrictEqual(settings.options.servers, ["gm1:4730", "gm2:4731"])
      assert.strictEqual(settings.options.consolePort, 0)
      assert.strictEqual(settings.options.interval, 0.5)
      assert.strictEqual(settings.options.maxIdleTime, 30)
      assert.deepStrictEqual(settings.options.modules, ["a.mjs"])
      assert.deepStrictEqual(settings.options.runtimeAttributes, { "X::y": { min_processes: 2 } })
      assert.strictEqual(settings.level._tag, "Debug")
      const typo = yield* Effect.either(resolveDriver(flags(file("intervall: 2\n"), ["a.mjs"])))
      assert.isTrue(Either.isLeft(typo) && typo.left.message.includes("intervall"))
      const noModule = yield* Effect.either(resolveDriver(flags(undefined)))
      assert.isTrue(Either.isLeft(noModule) && noModule.left.message.includes("--module"))
    }))
})
