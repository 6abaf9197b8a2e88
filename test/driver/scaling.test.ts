// Scaling from gearmand's queue, live: up to max under a queue, back to min once idle, every job
// run exactly once; lowering max drains the surplus; unknown functions with a queue are reported;
// a job server that is down does not stop the Driver.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { afterAll, assert, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { eventually } from "../gearman/gearmand.js"
import { closedPort } from "../support/ports.js"
import { alive, fixture, maxLive, startDriver, type Driver } from "./support.js"

const pidDir = mkdtempSync(Path.join(tmpdir(), "garivini-pid-"))
afterAll(() => rmSync(pidDir, { recursive: true, force: true }))
const pidFile = Path.join(pidDir, "driver.pid")
class DriverUnderTest extends Context.Tag("test/ScalingDriver")<DriverUnderTest, Driver>() {}

const driverLayer = Layer.scoped(
  DriverUnderTest,
  Effect.flatMap(closedPort, (deadPort) =>
    // A second job server that is down: the Driver starts and works anyway.
    startDriver([fixture("Scale.mjs")], { interval: 0.2, max_idle_time: 1, loglevel: "DEBUG", pid_file: pidFile }, {
      extraServers: [`127.0.0.1:${deadPort}`]
    }))
)

const runs = (output: string) => output.split("\n").flatMap((l) => l.match(/STDOUT: run (\d+)/)?.slice(1) ?? [])

layer(driverLayer, { excludeTestServices: true, timeout: "60 seconds" })("garivini driver scaling", (it) => {
  it.effect("20 queued slow jobs, max 4: four processes, then back to min after max_idle_time; each job ran once", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      yield* eventually(Effect.map(driver.processes("Scale::slow"), (n) => n === 1), "the min process")
      for (let i = 1; i <= 20; i++) yield* driver.gearman.submitBackground("Scale::slow", String(i))
      yield* eventually(Effect.map(driver.processes("Scale::slow"), (n) => n === 4), "four processes")
      yield* eventually(Effect.sync(() => runs(driver.output()).length >= 20), "all 20 jobs run")
      yield* eventually(Effect.map(driver.processes("Scale::slow"), (n) => n === 1), "back to the min process")
      const seen = runs(driver.output()).map(Number).sort((a, b) => a - b)
      assert.deepStrictEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1))
      assert.match(driver.output(), /Stopping \d process\(es\) of type Scale::slow \(idle: 1\)/)
      // never more than max alive at once
      assert.strictEqual(maxLive(driver.output(), "Scale::slow"), 4)
    }))

  it.effect("lowering max drains the surplus", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      assert.deepStrictEqual(yield* driver.ask("set_processes Scale::slow 3 3"), ["OK", "."])
      yield* eventually(Effect.map(driver.processes("Scale::slow"), (n) => n === 3), "three processes")
      assert.deepStrictEqual(yield* driver.ask("set_processes Scale::slow 0 1"), ["OK", "."])
      yield* eventually(Effect.map(driver.processes("Scale::slow"), (n) => n === 1), "one process left")
    }))

  it.effect("functions nobody serves, with jobs queued, are reported", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      yield* driver.gearman.submitBackground("nobody_serves_this", "x")
      yield* eventually(
        Effect.sync(() => driver.output().includes("unknown job nobody_serves_this: 1 queued")),
        "the unknown job reported"
      )
    }))

  it.effect("killall * replaces every process", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      assert.deepStrictEqual(yield* driver.ask("set_processes Scale::slow 1 1"), ["OK", "."])
      const before = yield* driver.pids("Scale::slow")
      assert.deepStrictEqual(yield* driver.ask("killall *"), ["OK", "."])
      yield* eventually(
        Effect.map(driver.pids("Scale::slow"), (p) => p.length === 1 && !before.includes(p[0]!)),
        "a new process"
      )
    }))

  it.effect("shutdown on the console: children drained, pid file removed, exit 0", () =>
    Effect.gen(function*() {
      const driver = yield* DriverUnderTest
      assert.strictEqual(readFileSync(pidFile, "utf8"), `${driver.pid}\n`)
      const children = yield* driver.pids("Scale::slow")
      // No `.` after shutdown: the connection just closes.
      assert.deepStrictEqual(yield* driver.session(["shutdown"]), [])
      assert.deepStrictEqual(yield* driver.exited, { code: 0, signal: null })
      assert.isFalse(existsSync(pidFile))
      assert.isTrue(children.every((pid) => !alive(pid)))
    }))
})
