// The admin text protocol: line framing (`\n` or `\r\n`, gearmand mixes both) and parsers
// for the answers of gearmand 1.1 and of Perl's Gearman::Server.
import { Either } from "effect"
import { GearmanProtocolError } from "../gearman/errors.js"

export interface FunctionStatus {
  readonly name: string
  /** queued + running jobs (gearmand counts abandoned ones until a worker grabs them) */
  readonly total: number
  readonly running: number
  /** CAN_DO registrations, not idle workers */
  readonly workers: number
}

export interface PriorityStatus {
  readonly name: string
  readonly high: number
  readonly normal: number
  readonly low: number
  readonly workers: number
}

export interface WorkerInfo {
  readonly fd: string
  readonly address: string
  readonly clientId: string
  readonly functions: ReadonlyArray<string>
}

export interface JobInfo {
  readonly handle: string
  readonly retries: number
  readonly ignored: boolean
  readonly queued: boolean
}

/** What shape of answer a command gets: a `.`-terminated list, or a single line. */
export type AnswerShape = "list" | "line"

export const answerShape = (command: string): AnswerShape => {
  const word = command.trim().split(/ +/)[0]?.toLowerCase() ?? ""
  return word === "status" || word === "prioritystatus" || word === "workers" || word === "show" || word === "jobs" ||
      word === "clients"
    ? "list"
    : "line"
}

/** Splits a byte stream into lines; one trailing `\r` is stripped. Bounded by `maxLine`. */
export class LineDecoder {
  private pending = ""
  private failure: GearmanProtocolError | undefined
  constructor(readonly maxLine: number = 1024 * 1024) {}

  push(chunk: Uint8Array): Either.Either<ReadonlyArray<string>, GearmanProtocolError> {
    if (this.failure) return Either.left(this.failure)
    this.pending += Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1")
    const lines: Array<string> = []
    let nl: number
    while ((nl = this.pending.indexOf("\n")) >= 0) {
      const raw = this.pending.slice(0, nl)
      this.pending = this.pending.slice(nl + 1)
      lines.push(Buffer.from(raw.endsWith("\r") ? raw.slice(0, -1) : raw, "latin1").toString("utf8"))
    }
    if (this.pending.length > this.maxLine) {
      this.failure = new GearmanProtocolError({
        reason: "LineTooLong",
        message: `admin line longer than ${this.maxLine} bytes`
      })
      this.pending = ""
      return Either.left(this.failure)
    }
    return Either.right(lines)
  }
}

/**
 * An error answer: `ERR` then a space (or nothing). Never holds a tab, so a status row of a
 * function named `ERRands` is not one (gearmand and Perl's server url-encode the text).
 */
export const isErrLine = (line: string): boolean => (line === "ERR" || line.startsWith("ERR ")) && !line.includes("\t")

/** Whether the lines collected so far make up the whole answer. */
export const answerComplete = (shape: AnswerShape, lines: ReadonlyArray<string>): boolean =>
  lines.length > 0 &&
  (shape === "line" || lines[lines.length - 1] === "." || (lines.length === 1 && isErrLine(lines[0]!)))

/** Largest admin answer read (a `status` of 100,000 functions is a few MiB). */
export const DEFAULT_MAX_ANSWER = 16 * 1024 * 1024

/**
 * Reads the answer to one command from a byte stream: lines, checked as they come, until the
 * answer is complete. Anything after the answer's end is ignored (it answers nothing we
 * asked); a line that cannot belong to the answer, or an answer past `maxAnswer` bytes, fails
 * at once rather than waiting for an end that may never come.
 */
export class AnswerReader {
  private readonly decoder: LineDecoder
  private readonly shape: AnswerShape
  private readonly lines: Array<string> = []
  private bytes = 0
  private result: Either.Either<ReadonlyArray<string>, GearmanProtocolError> | undefined

  constructor(
    readonly command: string,
    readonly maxAnswer: number = DEFAULT_MAX_ANSWER
  ) {
    this.decoder = new LineDecoder(Math.min(maxAnswer, 1024 * 1024))
    this.shape = answerShape(command)
  }

  /** Feeds bytes: the complete answer, its error, or undefined while more is needed. */
  push(chunk: Uint8Array): Either.Either<ReadonlyArray<string>, GearmanProtocolError> | undefined {
    if (this.result) return this.result
    const decoded = this.decoder.push(chunk)
    if (Either.isLeft(decoded)) return (this.result = decoded)
    for (const line of decoded.right) {
      if (!plausibleLine(this.command, line, this.lines.length)) {
        const message = `not a Gearman admin answer: ${JSON.stringify(line.slice(0, 80))}`
        return (this.result = Either.left(new GearmanProtocolError({ reason: "Malformed", message })))
      }
      this.lines.push(line)
      this.bytes += line.length + 1
      if (answerComplete(this.shape, this.lines)) return (this.result = Either.right(this.lines))
      if (this.bytes > this.maxAnswer) {
        const message = `admin answer longer than ${this.maxAnswer} bytes`
        return (this.result = Either.left(new GearmanProtocolError({ reason: "LineTooLong", message })))
      }
    }
    return undefined
  }
}

/**
 * Whether a line can belong to the answer of `command`: tab-separated rows for status,
 * prioritystatus and show jobs. Lets a peer that is not a job server be caught at once
 * instead of waiting for a `.` that never comes.
 */
export const plausibleLine = (command: string, line: string, index: number): boolean => {
  const words = command.trim().toLowerCase().split(/ +/)
  const tabbed = words[0] === "status" || words[0] === "prioritystatus" || (words[0] === "show" && words[1] === "jobs")
  return !tabbed || line === "." || line.includes("\t") || (index === 0 && isErrLine(line))
}

/** A count: digits only, within the safe integers (a negative or huge count is no count). */
const int = (s: string | undefined): number | undefined =>
  s !== undefined && /^\d+$/.test(s) && Number.isSafeInteger(Number(s)) ? Number(s) : undefined

/** `ERR code text` (text is url-encoded with `+` for spaces). */
export const parseErr = (line: string): { readonly code: string; readonly text: string } | undefined => {
  if (!isErrLine(line)) return undefined
  const [, code = "", ...rest] = line.split(" ")
  let text = rest.join(" ").replace(/\+/g, " ")
  try {
    text = decodeURIComponent(text)
  } catch {
    // not url-encoded after all: keep it as sent
  }
  return { code, text }
}

const listBody = (lines: ReadonlyArray<string>): Either.Either<ReadonlyArray<string>, string> => {
  const err = lines[0] !== undefined ? parseErr(lines[0]) : undefined
  if (err) return Either.left(`${err.code} ${err.text}`.trim())
  if (lines[lines.length - 1] !== ".") return Either.left("answer not terminated by '.'")
  return Either.right(lines.slice(0, -1))
}

export const parseStatus = (lines: ReadonlyArray<string>): Either.Either<ReadonlyArray<FunctionStatus>, string> =>
  Either.flatMap(listBody(lines), (body) => {
    const out: Array<FunctionStatus> = []
    for (const line of body) {
      // gearmand separates with tabs; function names may hold spaces, so split on tabs and
      // take the last three columns (Perl's server uses tabs too).
      const cols = line.split("\t")
      if (cols.length < 4) return Either.left(`bad status line: ${JSON.stringify(line)}`)
      const [total, running, workers] = cols.slice(-3).map(int)
      if (total === undefined || running === undefined || workers === undefined)
        return Either.left(`bad status line: ${JSON.stringify(line)}`)
      out.push({ name: cols.slice(0, -3).join("\t"), total, running, workers })
    }
    return Either.right(out)
  })

export const parsePriorityStatus = (
  lines: ReadonlyArray<string>
): Either.Either<ReadonlyArray<PriorityStatus>, string> =>
  Either.flatMap(listBody(lines), (body) => {
    const out: Array<PriorityStatus> = []
    for (const line of body) {
      const cols = line.split("\t")
      if (cols.length < 5) return Either.left(`bad prioritystatus line: ${JSON.stringify(line)}`)
      const [high, normal, low, workers] = cols.slice(-4).map(int)
      if (high === undefined || normal === undefined || low === undefined || workers === undefined) {
        return Either.left(`bad prioritystatus line: ${JSON.stringify(line)}`)
      }
      out.push({ name: cols.slice(0, -4).join("\t"), high, normal, low, workers })
    }
    return Either.right(out)
  })

export const parseWorkers = (lines: ReadonlyArray<string>): Either.Either<ReadonlyArray<WorkerInfo>, string> =>
  Either.flatMap(listBody(lines), (body) => {
    const out: Array<WorkerInfo> = []
    for (const line of body) {
      const colon = line.indexOf(" :")
      const head = (colon >= 0 ? line.slice(0, colon) : line).split(" ")
      if (colon < 0 || head.length < 3) return Either.left(`bad workers line: ${JSON.stringify(line)}`)
      const functions = line.slice(colon + 2).split(" ").filter((f) => f.length > 0)
      out.push({ fd: head[0]!, address: head[1]!, clientId: head.slice(2).join(" "), functions })
    }
    return Either.right(out)
  })

export const parseShowJobs = (lines: ReadonlyArray<string>): Either.Either<ReadonlyArray<JobInfo>, string> =>
  Either.flatMap(listBody(lines), (body) => {
    const out: Array<JobInfo> = []
    for (const line of body) {
      const cols = line.split("\t")
      const [retries, ignored, queued] = cols.slice(1).map(int)
      if (cols.length !== 4 || retries === undefined || ignored === undefined || queued === undefined) {
        return Either.left(`bad show jobs line: ${JSON.stringify(line)}`)
      }
      out.push({ handle: cols[0]!, retries, ignored: ignored !== 0, queued: queued !== 0 })
    }
    return Either.right(out)
  })

/** `OK` (gearmand) — the Perl server answers `OK` too. */
export const parseOk = (lines: ReadonlyArray<string>): Either.Either<void, string> => {
  const line = lines[0] ?? ""
  const err = parseErr(line)
  if (err) return Either.left(`${err.code} ${err.text}`.trim())
  return line === "OK" ? Either.right(undefined) : Either.left(`unexpected answer: ${JSON.stringify(line)}`)
}

/** `OK 1.1.20+ds` (gearmand) or `v1.130.1` (Perl). */
export const parseVersion = (lines: ReadonlyArray<string>): Either.Either<string, string> => {
  const line = lines[0] ?? ""
  const err = parseErr(line)
  if (err) return Either.left(`${err.code} ${err.text}`.trim())
  if (line.startsWith("OK ")) return Either.right(line.slice(3).trim())
  if (/^v\d/.test(line)) return Either.right(line.slice(1).trim())
  return Either.left(`unexpected version answer: ${JSON.stringify(line)}`)
}

/** `OK <pid>` */
export const parsePid = (lines: ReadonlyArray<string>): Either.Either<number, string> => {
  const line = lines[0] ?? ""
  const err = parseErr(line)
  if (err) return Either.left(`${err.code} ${err.text}`.trim())
  const pid = int(line.startsWith("OK ") ? line.slice(3).trim() : undefined)
  return pid === undefined ? Either.left(`unexpected getpid answer: ${JSON.stringify(line)}`) : Either.right(pid)
}
