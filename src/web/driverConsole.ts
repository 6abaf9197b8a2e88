/**
 * A client of the Driver's management console (src/driver/Console.ts, docs/driver.md): one TCP
 * connection a command, one command line, the answer's lines up to the closing `.`. Used by the
 * web console's Driver page (`garivini web --driver-console HOST:PORT`): `status` to list the
 * Driver jobs, `set_processes` to change a job's min/max. Bounded: a timeout, and at most
 * `MAX_ANSWER_BYTES` read.
 */
import * as Net from "node:net"
import { Data, Effect } from "effect"
import { formatHostPort } from "../hostPort.js"
import type { HostPort } from "../hostPort.js"

export class DriverConsoleFailed extends Data.TaggedError("DriverConsoleFailed")<{
  readonly address: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `the Driver's console at ${this.address}: ${this.reason}`
  }
}

const MAX_ANSWER_BYTES = 1 << 20
const TIMEOUT_MS = 5000

/** Sends one command line and reads its answer's lines (without the closing `.`). */
export const command = (address: HostPort, line: string): Effect.Effect<ReadonlyArray<string>, DriverConsoleFailed> => {
  const where = formatHostPort(address)
  const failed = (reason: string, cause?: unknown) => new DriverConsoleFailed({ address: where, reason, cause })
  if (/[\r\n]/.test(line)) return Effect.fail(failed("a command is one line"))
  return Effect.async<ReadonlyArray<string>, DriverConsoleFailed>((resume) => {
    const socket = Net.connect({ host: address.host, port: address.port })
    let buffer = ""
    let done = false
    const finish = (result: Effect.Effect<ReadonlyArray<string>, DriverConsoleFailed>) => {
      if (done) return
      done = true
      socket.destroy()
      resume(result)
    }
    socket.setEncoding("utf8")
    socket.setTimeout(TIMEOUT_MS, () => finish(Effect.fail(failed(`no answer within ${TIMEOUT_MS} ms`))))
    socket.on("connect", () => socket.write(`${line}\r\n`))
    socket.on("data", (chunk: string) => {
      buffer += chunk
      if (buffer.length > MAX_ANSWER_BYTES) return finish(Effect.fail(failed("answer too long")))
      const lines = buffer.split(/\r?\n/)
      const end = lines.indexOf(".")
      if (end >= 0) finish(Effect.succeed(lines.slice(0, end)))
    })
    socket.on("error", (e) => finish(Effect.fail(failed(e.message, e))))
    socket.on("close", () => finish(Effect.fail(failed("closed before the answer ended"))))
    return Effect.sync(() => socket.destroy())
  })
}

export interface DriverJobRow {
  readonly name: string
  readonly min: number
  readonly max: number
  readonly processes: number
  /** ISO time of the last run (UTC, seconds), or null: never. */
  readonly lastRun: string | null
  readonly lastError: string | null
  readonly lastErrorMessage: string | null
}

const NEVER_TIME = "1970-01-01T00:00:00"

/** `status` lines: name, min, max, processes, lastrun, lasterror, then `ERROR: message` if any. */
export const parseStatus = (lines: ReadonlyArray<string>): ReadonlyArray<DriverJobRow> =>
  lines.flatMap((line) => {
    const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s*(?:ERROR: (.*))?$/.exec(line)
    if (m === null) return []
    return [{
      name: m[1]!,
      min: Number(m[2]),
      max: Number(m[3]),
      processes: Number(m[4]),
      lastRun: m[5] === NEVER_TIME ? null : m[5]!,
      lastError: m[6] === NEVER_TIME ? null : m[6]!,
      lastErrorMessage: m[7] === undefined || m[7] === "" ? null : m[7]
    }]
  })

export const driverStatus = (address: HostPort) => Effect.map(command(address, "status"), parseStatus)

/** A Driver job's name as the console takes it: one word (no blank can smuggle a second command). */
export const isDriverJobName = (name: string): boolean => /^\S{1,200}$/.test(name)

/** `set_processes job min max`; fails with the console's `ERR` line when it refuses. */
export const setProcesses = (address: HostPort, job: string, min: number, max: number) =>
  Effect.flatMap(
    isDriverJobName(job)
      ? command(address, `set_processes ${job} ${min} ${max}`)
      : Effect.fail(new DriverConsoleFailed({ address: formatHostPort(address), reason: "not a Driver job name" })),
    (answer) =>
      answer[0] === "OK"
        ? Effect.void
        : Effect.fail(
          new DriverConsoleFailed({ address: formatHostPort(address), reason: answer.join(" ") || "no answer" })
        )
  )
