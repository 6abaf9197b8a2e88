// Hostile console clients and a second Driver, against the built `garivini driver`: a fork bomb
// asked on the console or by SIGHUP is refused; the console on a Unix socket (mode 0600); a client
// that never reads its answers, a line without end and too many connections are cut off alone;
// a second Driver leaves the first one's pid file and console socket alone.
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import type * as Net from "node:net"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { afterAll, assert, it, layer } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import { stringify } from "yaml"
import { MAX_CONNECTIONS, MAX_LINE_BYTES } from "../../src/driver/Console.js"
import { eventually } from "../gearman/gearmand.js"
import { background, garivini } from "../support/cli.js"
import { tempDir } from "../support/files.js"
import { ask, connectConsole, fixture, maxLive, startDriver, type Driver } from "./support.js"

const dir = mkdtempSync(Path.join(tmpdir(), "garivini-console-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const socketPath = Path.join(dir, "console.sock")
const pidFile = Path.join(dir, "driver.pid")
const config = {
  interval: 0,
  max_processes_per_job: 4,
  max_processes: 5,
  console_socket: socketPath,
  pid_file: pidFile,
  loglevel: "DEBUG"
}

class DriverUnderTest extends Context.Tag("test/ConsoleDriver")<DriverUnderTest, Driver>() {}
const driverLayer = Layer.scoped(DriverUnderTest, startDriver([fixture("Scale.mjs")], config))

/** A connected console client; closes when the test's scope does. */
const client = (address: number | string) =>
  Effect.acquireRelease(
    Effect.async<Net.Socket, Error>((resume) => {
      const socket = connectConsole(address)
      socket.once("connect", () => resume(Effect.succeed(socket)))
      socket.once("error", (e) => resume(Effect.fail(e)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

/** Everything the Driver sends until it closes the connection. */
const untilClosed = (socket: Net.Socket) =>
  Effect.async<string>((resume) => {
    let got = ""
    socket.on("data", (d: Buffer) => (got += d.toString()))
    socket.on("error", () => {})
    socket.on("close", () => resume(Effect.succeed(got)))
    socket.resume()
  })

layer(driverLayer, { excludeTestServices: true, timeout: "60 seconds" })(
  "garivini driver: hostile input and hard limits",
  (it) => {
    it.effect("the console refuses more processes than the maxima; the most live processes stays within them", () =>
      Effect.gen(function*() {
        const driver = yield* DriverUnderTest
        assert.deepStrictEqual(yield* driver.ask("set_processes Scale::slow 100000 100000"), [
          "ERR invalid_value: max_processes must be <= 4 (Scale::slow: 100000)",
          "."
        ])
        assert.deepStrictEqual(yield* driver.ask("set_processes Scale::slow 4 4"), ["OK", "."])
        yield* eventually(Effect.map(driver.processes("Scale::slow"), (n) => n === 4), "four processes")
        assert.strictEqual(maxLive(driver.output(), "Scale::slow"), 4)
        // SIGHUP with a file over the limits: logged, nothing changes
        yield* driver.writeConfig({
          ...config,
          job_runtime_attributes: { "Scale::slow": { min_processes: 50, max_processes: 50 } }
        })
        yield* driver.signal("SIGHUP")
        yield* eventually(
          Effect.sync(() => driver.output().includes("configuration not reloaded")),
          "the reload refused"
        )
        assert.match(driver.output(), /configuration not reloaded: .*max_processes must be <= 4 \(Scale::slow: 50\)/)
        assert.match((yield* driver.ask("show Scale::slow"))[0]!, /^Scale::slow {2}4 {2}4 {2}4 /)
        yield* driver.writeConfig(config)
        assert.deepStrictEqual(yield* driver.ask("set_processes Scale::slow 1 1"), ["OK", "."])
        assert.strictEqual(maxLive(driver.output()), 4)
      }))

    it.effect("the console also listens on a Unix socket only the Driver's user may open", () =>
      Effect.gen(function*() {
        const driver = yield* DriverUnderTest
        const stat = statSync(socketPath)
        assert.isTrue(stat.isSocket())
        assert.strictEqual(stat.mode & 0o777, 0o600)
        assert.deepStrictEqual(yield* ask(socketPath, "show Scale::slow"), yield* driver.ask("show Scale::slow"))
      }))

    it.scoped("a client that never reads its answers is cut off alone", () =>
      Effect.gen(function*() {
        const driver = yield* DriverUnderTest
        const greedy = yield* client(driver.consolePort)
        greedy.pause()
        greedy.on("error", () => {})
        // ~40 MB of answers asked for, none read
        greedy.write("help\r\n".repeat(60_000))
        yield* eventually(
          Effect.sync(() =>
            driver.output().includes("console client cut off: more than 1048576 bytes of answers unread")
          ),
          "the cut-off"
        )
        yield* untilClosed(greedy)
        // everyone else is served
        assert.strictEqual((yield* driver.ask("status")).length, 2)
        assert.strictEqual((yield* ask(socketPath, "status")).length, 2)
      }))

    it.scoped("a line longer than the bound is answered with an ERR and the connection closed", () =>
      Effect.gen(function*() {
        const driver = yield* DriverUnderTest
        const long = yield* client(driver.consolePort)
        long.write("x".repeat(MAX_LINE_BYTES + 1000))
        assert.strictEqual(
          yield* untilClosed(long),
          `ERR invalid_value: line longer than ${MAX_LINE_BYTES} bytes\r\n.\r\n`
        )
        assert.strictEqual((yield* driver.ask("status")).length, 2)
      }))

    it.scoped("connections beyond the bound are closed at once; a freed place is taken again", () =>
      Effect.gen(function*() {
        const driver = yield* DriverUnderTest
        const held = yield* Effect.forEach(Array.from({ length: MAX_CONNECTIONS }), () => client(driver.consolePort))
        // each is accepted: it answers
        held[0]!.write("help\r\n")
        yield* Effect.async<void>((resume) => void held[0]!.once("data", () => resume(Effect.void)))
        const extra = yield* Effect.either(driver.ask("status"))
        assert.isTrue(Either.isLeft(extra) || extra.right.length === 0)
        held[1]!.destroy()
        yield* eventually(
          Effect.map(Effect.either(driver.ask("status")), (r) => Either.isRight(r) && r.right.length === 2),
          "a place again"
        )
      }))

    it.effect("a second Driver on the same pid file and console fails, leaving both to the first", () =>
      Effect.gen(function*() {
        const driver = yield* DriverUnderTest
        assert.strictEqual(readFileSync(pidFile, "utf8"), `${driver.pid}\n`)
        const second = yield* garivini("driver", "--module", fixture("Scale.mjs"), "--config", driver.configPath)
        assert.strictEqual(second.code, 1)
        assert.include(second.stderr, `pid file ${pidFile} names process ${driver.pid}, which is running`)
        assert.strictEqual(readFileSync(pidFile, "utf8"), `${driver.pid}\n`)
        // Its own pid file, but the first one's console socket: refused, the socket kept.
        const other = Path.join(dir, "other.yml")
        writeFileSync(
          other,
          stringify({
            server: driver.gearmand.server,
            console_port: 0,
            console_socket: socketPath,
            pid_file: Path.join(dir, "other.pid")
          })
        )
        const third = yield* garivini("driver", "--module", fixture("Scale.mjs"), "--config", other)
        assert.strictEqual(third.code, 1)
        assert.include(third.stderr, `cannot listen on ${socketPath} for the console`)
        assert.isFalse(existsSync(Path.join(dir, "other.pid")))
        assert.strictEqual((yield* ask(socketPath, "status")).length, 2)
      }))
  }
)

it.scopedLive(
  "a pid file left by a Driver that is gone is replaced, and removed at exit",
  () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir("garivini-stale-"), "driver.pid")
      const dead = spawnSync("true").pid
      writeFileSync(path, `${dead}\n`)
      // no job server up: the Driver starts anyway
      const driver = yield* background(
        "driver",
        "--module",
        fixture("Scale.mjs"),
        "--server",
        "127.0.0.1:1",
        "--console-port",
        "0",
        "--interval",
        "0",
        "--pid-file",
        path
      )
      yield* eventually(
        Effect.sync(() => /^\d+\n$/.test(readFileSync(path, "utf8")) && readFileSync(path, "utf8") !== `${dead}\n`),
        "the pid file taken over"
      )
      const exit = yield* driver.stop("SIGTERM")
      assert.strictEqual(exit.code, 0)
      assert.include(exit.stderr, `replacing stale pid file ${path} (process ${dead} is gone)`)
      assert.isFalse(existsSync(path))
    }),
  60_000
)
