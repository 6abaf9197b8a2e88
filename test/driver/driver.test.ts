// `garivini driver` (built, children from dist) against a real gearmand: declaring workers,
// the console, keeping min processes, crashes, SIGHUP and SIGTERM. One Driver for the file.
import { readFileSync } from "node:fs"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Either, Fiber, Layer } from "effect"
import { eventually } from "../gearman/gearmand.js"
import { fixture, startDriver, type Driver } from "./support.js"

class DriverUnderTest extends Context.Tag("test/DriverUnderTest")<DriverUnderTest, Driver>() {}

const config = {
  interval: 0.2,
  max_idle_time: 1,
  shutdown_timeout: 20,
  job_runtime_attributes: {
    "Demo::options": { min_processes: 1, max_processes: 2 },
    // keyed `<module>::<name>` as the original, though the job's name has no prefix
    "Bare::bare_echo": { max_processes: 4 }
  },
  worker_options: { GLOBAL: { dsn: "x", format: "png" }, Demo: { format: "jpeg" } }
}

const driverLayer = Layer.scoped(DriverUnderTest, startDriver([fixture("Demo.mjs"), fixture("Bare.mjs")], config))

const text = (r: { readonly data: Buffer }) => r.data.toString("utf8")
/** name, min, max and processes of every status line. */
const limits = (lines: ReadonlyArray<string>) => lines.slice(0, -1).map((l) => l.split(/ {2,}/).slice(0, 4).join(" "))

layer(driverLayer, { excludeTestServices: true, timeout: "60 seconds" })("garivini driver", (it) => {
  it.effect("attributes: defaults, default/override sets, groups, prefix and job_runtime_attributes", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      const expected = [
        "Demo::crash 0 1 0",
        "Demo::fail 1 1 1",
        "Demo::math 2 3 2",
        "Demo::options 1 2 1",
        "Demo::ping 1 1 1",
        "Demo::slow 0 4 0",
        "bare_echo 0 4 0",
        "bare_min 1 2 1"
      ]
      yield* eventually(
        Effect.map(driver.ask("status"), (l) => limits(l).join("|") === expected.join("|")),
        "min processes of every job"
      )
      // Columns padded to the widest value, two spaces apart; a job with no error ends in two spaces.
      const status = yield* driver.ask("status")
      assert.strictEqual(status[0], "Demo::crash    0  1  0  1970-01-01T00:00:00  1970-01-01T00:00:00  ")
      assert.strictEqual(status.length, 9)
      assert.strictEqual(status[8], ".")
    }))

  it.effect("prefix, groups and encode/decode", () =>
    Effect.gen(function*() {
      const { ask, gearman, pids } = yield* DriverUnderTest
      assert.strictEqual(text(yield* gearman.submit("bare_echo", "hi")), "bare hi")
      const ping = text(yield* gearman.submit("Demo::ping", "hi"))
      assert.match(ping, /^pong hi \d+$/)
      assert.deepStrictEqual(yield* pids("Demo::ping"), [Number(ping.split(" ")[2])])
      // processName renamed the child
      assert.include(readFileSync(`/proc/${ping.split(" ")[2]}/cmdline`, "utf8"), "(Demo::ping)")
      // decode JSON in, encode JSON out
      assert.strictEqual(
        text(yield* gearman.submit("Demo::add", JSON.stringify({ a: 2, b: 3 }))),
        JSON.stringify({ sum: 5 })
      )
      assert.strictEqual(text(yield* gearman.submit("Demo::mul", JSON.stringify({ a: 2, b: 3 }))), "6")
      // a workload decode refuses fails the job, and says why
      assert.isTrue(Either.isLeft(yield* Effect.either(gearman.submit("Demo::add", "not json"))))
      assert.include((yield* ask("show Demo::math"))[0]!, "ERROR: decode failed: ")
      // add and mul share the group's processes: nothing else registers them
      const math = yield* pids("Demo::math")
      assert.strictEqual(math.length, 2)
      const registered = (fn: string) =>
        Effect.map(Effect.orDie(gearman.queueDepths()), (d) => d.get(fn)?.workers === 2)
      yield* eventually(registered("Demo::add"), "both math processes registered for add")
      yield* eventually(registered("Demo::mul"), "both math processes registered for mul")
    }))

  it.effect("begin and end run around each job, end also after a failure; the failure shows in status", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      const failed = yield* Effect.either(driver.gearman.submit("Demo::fail", "x1"))
      assert.isTrue(Either.isLeft(failed) && failed.left._tag === "GearmanJobFailed")
      yield* eventually(Effect.sync(() => driver.output().includes(`end Demo::fail \\"x1\\"`)), "end after the failure")
      const out = driver.output()
      assert.isTrue(out.indexOf(`begin Demo::fail \\"x1\\"`) < out.indexOf(`end Demo::fail \\"x1\\"`))
      const [line] = yield* driver.ask("show Demo::fail")
      assert.match(
        line!,
        /^Demo::fail {2}1 {2}1 {2}1 {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d {2}ERROR: boom: x1$/
      )
      assert.notInclude(line!, "1970")
    }))

  it.effect("worker_options: GLOBAL under the module's own", () =>
    Effect.gen(function*() {
      const { gearman } = yield* DriverUnderTest
      assert.deepStrictEqual(JSON.parse(text(yield* gearman.submit("Demo::options", ""))), { dsn: "x", format: "jpeg" })
    }))

  it.effect("console: every command with its exact output and errors", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      const [ping] = yield* driver.pids("Demo::ping")
      const answers = yield* driver.session([
        "STATUS",
        "  status",
        "port",
        "show",
        "show nope",
        "set_min_processes nope 1",
        "set_min_processes Demo::slow x",
        "set_min_processes Demo::slow 5",
        "set_max_processes Demo::slow",
        "set_max_processes Demo::slow -1",
        "set_processes Demo::slow 1",
        "set_processes Demo::slow 2 1",
        "set_processes Demo::slow 0 3",
        "set_min_processes Demo::slow 0",
        "set_max_processes Demo::slow 4",
        "kill",
        `kill 1 ${driver.pid}`,
        "killall",
        "killall nope",
        `show Demo::ping`,
        "quit",
        "status"
      ])
      const err = (line: string) => `${line}\r\n.\r\n`
      assert.deepStrictEqual(answers.slice(0, 19), [
        err("ERR unknown_command: STATUS"),
        err("ERR unknown_command: "),
        err("ERR unknown_command: port"),
        err("ERR invalid_job_name: "),
        err("ERR invalid_job_name: nope"),
        err("ERR invalid_job_name: nope"),
        err("ERR invalid_value: min_processes must be >= 0"),
        err("ERR invalid_value: min_processes must be smaller than max_processes"),
        err("ERR invalid_value: max_processes must be >= 0"),
        err("ERR invalid_value: max_processes must be >= 0"),
        err("ERR invalid_value: max_processes must be >= 0"),
        err("ERR invalid_value: max_processes must be greater than min_processes"),
        err("OK"),
        err("OK"),
        err("OK"),
        err("ERR invalid_value: the given PID(s) do not belong to us"),
        err("ERR invalid_value: the given PID(s) do not belong to us"),
        err("ERR invalid_value: no job_names given"),
        err("ERR invalid_job_name: nope")
      ])
      // show: the job's line unpadded, then one pid a line; quit closes without a `.`
      assert.match(answers[19]!, new RegExp(`^Demo::ping  1  1  1  \\S+  \\S+  \\r\\n${ping}\\r\\n\\.\\r\\n$`))
      assert.strictEqual(answers.length, 20)
      const help = yield* driver.ask("help")
      assert.include(help.join("\n"), "set_processes <job> <min> <max>")
      assert.strictEqual(help[help.length - 1], ".")
    }))

  it.effect("min processes are kept when children are killed (console kill, killall, SIGKILL)", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      const [ping] = yield* driver.pids("Demo::ping")
      assert.deepStrictEqual(yield* driver.ask(`kill ${ping}`), ["OK", "."])
      yield* eventually(
        Effect.map(driver.pids("Demo::ping"), (p) => p.length === 1 && p[0] !== ping),
        "a new ping process"
      )
      const math = yield* driver.pids("Demo::math")
      assert.deepStrictEqual(yield* driver.ask("killall Demo::math"), ["OK", "."])
      yield* eventually(
        Effect.map(driver.pids("Demo::math"), (p) => p.length === 2 && !p.some((pid) => math.includes(pid))),
        "two new math processes"
      )
      const [again] = yield* driver.pids("Demo::ping")
      process.kill(again!, "SIGKILL")
      yield* eventually(
        Effect.map(driver.pids("Demo::ping"), (p) => p.length === 1 && p[0] !== again),
        "ping restarted after SIGKILL"
      )
      assert.match(text(yield* driver.gearman.submit("Demo::ping", "again")), /^pong again \d+$/)
    }))

  it.effect("a crashing job restarts its process with backoff while the others keep working", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      yield* driver.gearman.submitBackground("Demo::crash", "boom")
      const crashes = () =>
        driver.output().split("\n").filter((l) => l.includes("[Demo::crash] Exited with status code 3")).length
      yield* eventually(Effect.sync(() => crashes() >= 2), "the crashing process restarted and crashed again")
      assert.match((yield* driver.ask("show Demo::crash"))[0]!, /ERROR: process exited with code 3( \(.*\))?$/)
      assert.match(text(yield* driver.gearman.submit("Demo::ping", "still")), /^pong still \d+$/)
      assert.strictEqual(text(yield* driver.gearman.submit("bare_echo", "still")), "bare still")
      // Hold it back for good: max 0 starts nothing (the job stays queued in gearmand).
      assert.deepStrictEqual(yield* driver.ask("set_processes Demo::crash 0 0"), ["OK", "."])
    }))

  it.effect("SIGHUP reloads job_runtime_attributes without stopping jobs", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      const before = yield* driver.pids("Demo::options")
      yield* driver.writeConfig({
        ...config,
        job_runtime_attributes: { "Demo::options": { min_processes: 2, max_processes: 3 } }
      })
      yield* driver.signal("SIGHUP")
      yield* eventually(
        Effect.map(driver.ask("show Demo::options"), (l) => l[0]!.startsWith("Demo::options  2  3  2  ")),
        "min 2 max 3 and two processes"
      )
      // the running process was kept
      assert.include(yield* driver.pids("Demo::options"), before[0]!)
    }))

  it.effect("SIGHUP with a bad file logs why and changes nothing", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      const before = yield* driver.ask("status")
      const pids = yield* driver.pids("Demo::options")
      // An unknown key and a negative min: refused whole, nothing of it applied.
      yield* driver.writeConfig({
        ...config,
        bogus_key: 1,
        job_runtime_attributes: { "Demo::options": { min_processes: 3, max_processes: -1 } }
      })
      yield* driver.signal("SIGHUP")
      yield* eventually(
        Effect.sync(() => driver.output().includes("SIGHUP: configuration not reloaded")),
        "the refused reload logged"
      )
      // Names, min and max unchanged (the process counts are not: Demo::crash keeps restarting).
      const minMax = (lines: ReadonlyArray<string>) => limits(lines).map((l) => l.split(" ").slice(0, 3).join(" "))
      assert.deepStrictEqual(minMax(yield* driver.ask("status")), minMax(before))
      assert.deepStrictEqual(yield* driver.pids("Demo::options"), pids)
      yield* driver.writeConfig(config)
    }))

  it.effect("console kill of a busy process: its job finishes before it exits; a new one takes its place", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      assert.deepStrictEqual(yield* driver.ask("set_processes Demo::slow 1 1"), ["OK", "."])
      yield* eventually(Effect.map(driver.processes("Demo::slow"), (n) => n === 1), "one slow process")
      const [busy] = yield* driver.pids("Demo::slow")
      const begun = () => driver.output().split("\n").filter((l) => l.includes("begin Demo::slow")).length
      const before = begun()
      const job = yield* Effect.fork(Effect.map(driver.gearman.submit("Demo::slow", "1500"), text))
      yield* eventually(Effect.sync(() => begun() === before + 1), "the slow job running")
      assert.deepStrictEqual(yield* driver.ask(`kill ${busy}`), ["OK", "."])
      // Drained, not killed: the job completes in the process that had it.
      assert.strictEqual(yield* Fiber.join(job), String(busy))
      yield* eventually(
        Effect.map(driver.pids("Demo::slow"), (p) => p.length === 1 && p[0] !== busy),
        "a new slow process"
      )
      assert.deepStrictEqual(yield* driver.ask("set_processes Demo::slow 0 4"), ["OK", "."])
    }))

  it.effect("SIGTERM with jobs in flight: they complete, then the Driver exits 0", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      assert.deepStrictEqual(yield* driver.ask("set_processes Demo::slow 3 4"), ["OK", "."])
      yield* eventually(Effect.map(driver.processes("Demo::slow"), (n) => n === 3), "three slow processes")
      const begun = () => driver.output().split("\n").filter((l) => l.includes(`begin Demo::slow`)).length
      const before = begun()
      const jobs = yield* Effect.fork(
        Effect.forEach([1, 2, 3], () => Effect.map(driver.gearman.submit("Demo::slow", "1500"), text), {
          concurrency: "unbounded"
        })
      )
      yield* eventually(Effect.sync(() => begun() === before + 3), "three slow jobs running")
      yield* driver.signal("SIGTERM")
      const slow = yield* Fiber.join(jobs)
      assert.strictEqual(slow.length, 3)
      for (const pid of slow) assert.match(pid, /^\d+$/)
      const exit = yield* driver.exited
      assert.deepStrictEqual(exit, { code: 0, signal: null })
    }))
})
