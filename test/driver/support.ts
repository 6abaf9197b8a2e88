// The built `garivini driver` run as an operator would (children run from dist), a gearmand of
// its own, and a console client speaking the line protocol.
import { spawn } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { Deferred, Effect } from "effect"
import { stringify } from "yaml"
import { eventually, gearmand, live } from "../gearman/gearmand.js"
import { CHILD_SPEC_ENV } from "../../src/driver/ipc.js"
import { childEnv } from "../support/env.js"
import { tempDir } from "../support/files.js"
import { freePort } from "../support/ports.js"

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** A console's TCP port on 127.0.0.1, or its Unix socket's path. */
export type ConsoleAddress = number | string

export const connectConsole = (address: ConsoleAddress) =>
  typeof address === "number" ? Net.connect(address, "127.0.0.1") : Net.connect(address)

/** Sends command lines and returns the raw answer of each (up to and with its `.` line). */
export const consoleSession = (address: ConsoleAddress, commands: ReadonlyArray<string>) =>
  Effect.async<ReadonlyArray<string>, Error>((resume) => {
    const socket = connectConsole(address)
    const answers: Array<string> = []
    let buffer = ""
    let next = 0
    const send = () => {
      if (next < commands.length) socket.write(`${commands[next++]}\r\n`)
      else socket.end()
    }
    socket.on("connect", send)
    socket.on("data", (chunk) => {
      buffer += chunk.toString("utf8")
      let end: number
      while ((end = buffer.indexOf(".\r\n")) >= 0 && (end === 0 || buffer[end - 1] === "\n")) {
        answers.push(buffer.slice(0, end + 3))
        buffer = buffer.slice(end + 3)
        send()
      }
    })
    socket.on("error", (e) => resume(Effect.fail(e)))
    socket.on("close", () => {
      if (buffer !== "") answers.push(buffer)
      resume(Effect.succeed(answers))
    })
  })

/** One command's answer lines (without `\r\n`, the `.` line included). */
export const ask = (address: ConsoleAddress, command: string) =>
  Effect.map(consoleSession(address, [command]), (answers) => (answers[0] ?? "").split("\r\n").slice(0, -1))

/** Whether a process exists (signal 0). */
export const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Children the Driver's log says it started and has not seen exit. */
export const runningChildren = (output: string): ReadonlyArray<number> => {
  const running = new Set<number>()
  for (const [, pid, event] of output.matchAll(/\((\d+)\) \[[^\]]+\] (Process started|Exited with status)/g)) {
    if (event === "Process started") running.add(Number(pid))
    else running.delete(Number(pid))
  }
  return [...running]
}

/** SIGKILL to a Driver child, if that pid still is one (a pid is reused once its process is gone). */
const killChild = (pid: number) => {
  try {
    // Its spec in the environment (its command line is its process name, which a module may set).
    if (readFileSync(`/proc/${pid}/environ`, "latin1").includes(`${CHILD_SPEC_ENV}=`)) process.kill(pid, "SIGKILL")
  } catch {
    // gone already
  }
}

export const fixture = (name: string) => Path.join("test/driver/fixtures", name)

/**
 * A gearmand and `garivini driver` over it (and `extraServers`) with `config` (as YAML; `server`
 * and `console_port` filled in), killed when the scope closes.
 */
export const startDriver = (
  modules: ReadonlyArray<string>,
  config: Record<string, unknown> = {},
  options: { readonly extraServers?: ReadonlyArray<string>; readonly env?: Readonly<Record<string, string>> } = {}
) =>
  Effect.gen(function*() {
    const gd = yield* gearmand
    const consolePort = yield* freePort
    const dir = yield* tempDir("garivini-driver-")
    const configPath = Path.join(dir, "driver.yml")
    const writeConfig = (c: Record<string, unknown>) =>
      Effect.sync(() =>
        writeFileSync(
          configPath,
          stringify({ server: [gd.server, ...(options.extraServers ?? [])].join(","), console_port: consolePort, ...c })
        )
      )
    yield* writeConfig(config)
    const exit = yield* Deferred.make<Exited>()
    let output = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn("node", [
          "bin/garivini.js",
          "driver",
          ...modules.flatMap((m) => ["--module", m]),
          "--config",
          configPath,
          "--log-format",
          "logfmt"
        ], {
          env: childEnv(options.env),
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      // Its children too: they run in process groups of their own, and one whose Driver is gone
      // still finishes its job first (a test's may be minutes long).
      (c) =>
        Effect.sync(() => {
          c.kill("SIGKILL")
          for (const pid of runningChildren(output)) killChild(pid)
        })
    )
    child.stdout.on("data", (d: Buffer) => (output += d.toString()))
    child.stderr.on("data", (d: Buffer) => (output += d.toString()))
    child.on("exit", (code, signal) => Effect.runSync(Deferred.succeed(exit, { code, signal })))
    const gearman = yield* live([gd.server])
    const driver = {
      gearmand: gd,
      gearman,
      consolePort,
      pid: child.pid!,
      configPath,
      writeConfig,
      output: () => output,
      ask: (command: string) => ask(consolePort, command),
      session: (commands: ReadonlyArray<string>) => consoleSession(consolePort, commands),
      signal: (signal: NodeJS.Signals) => Effect.sync(() => child.kill(signal)),
      exited: Deferred.await(exit),
      /** Pids of a job (`show`). */
      pids: (job: string) => Effect.map(ask(consolePort, `show ${job}`), (lines) => lines.slice(1, -1).map(Number)),
      /** The processes column of a job's `status` line. */
      processes: (job: string) =>
        Effect.map(ask(consolePort, `show ${job}`), (lines) => Number(lines[0]?.split("  ")[3]))
    }
    // Up once the console answers and every job has its min processes registered with gearmand.
    // A Driver that exits instead (a bad config, say) fails the test at once, with its output.
    const exitedEarly = Effect.flatMap(
      Deferred.await(exit),
      (e) => Effect.dieMessage(`the driver exited (${e.code ?? e.signal}): ${output}`)
    )
    yield* Effect.raceFirst(
      eventually(
        Effect.map(Effect.either(driver.ask("status")), (r) => r._tag === "Right"),
        "the driver's console",
        20_000
      ),
      exitedEarly
    )
    return driver
  })

export type Driver = Effect.Effect.Success<ReturnType<typeof startDriver>>

/**
 * The most processes (of `job`, or of all jobs) that were alive at once, from the Driver's own
 * log of starts and exits: exact, where sampling the console could miss a peak.
 */
export const maxLive = (output: string, job?: string) => {
  let live = 0
  let max = 0
  for (const [, name, event] of output.matchAll(/\(\d+\) \[([^\]]+)\] (Process started|Exited with status)/g)) {
    if (job !== undefined && name !== job) continue
    live += event === "Process started" ? 1 : -1
    max = Math.max(max, live)
  }
  return max
}
