// Tagged errors of the Gearman layer. Every failure a caller can act on is one of these,
// named for what happened; nothing is thrown across module edges. Each renders a one-line
// `message` saying what happened, and one that wraps a lower failure keeps it as `cause`.
import { Data } from "effect"
import { quoteBounded } from "../text.js"

/** A payload quoted in a message: its UTF-8 text, bounded (a worker's exception may be large). */
const quotePayload = (data: Uint8Array | string): string =>
  quoteBounded(
    typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8")
  )

/** The peer broke the framing: bad magic, unknown packet type, oversized or malformed frame. */
export class GearmanProtocolError extends Data.TaggedError("GearmanProtocolError")<{
  readonly reason: "BadMagic" | "UnknownType" | "FrameTooLarge" | "Malformed" | "LineTooLong"
  readonly message: string
}> {}

/**
 * A request this side refused to send: a function name holding whitespace or control characters
 * (they forge lines of the admin protocol), or a NUL in an argument other than a packet's last
 * (it would shift every argument after it). Nothing was sent.
 */
export class GearmanInvalidArgument extends Data.TaggedError("GearmanInvalidArgument")<{
  readonly message: string
}> {}

/** A job server could not be reached, or the connection to it was lost. */
export class GearmanConnectionError extends Data.TaggedError("GearmanConnectionError")<{
  readonly server: string
  readonly message: string
  readonly cause?: unknown
}> {}

/** No configured job server is up to take the request. */
export class GearmanNoServerAvailable extends Data.TaggedError("GearmanNoServerAvailable")<{
  readonly servers: ReadonlyArray<string>
  readonly message: string
  /** The last server's failure (a GearmanConnectionError), when one was tried. */
  readonly cause?: unknown
}> {}

/** The job server answered a request with an ERROR packet (e.g. QUEUE_ERROR, ARGUMENT_TOO_LARGE). */
export class GearmanServerError extends Data.TaggedError("GearmanServerError")<{
  readonly server: string
  readonly code: string
  readonly text: string
}> {
  override get message(): string {
    return `${this.server} refused the request: ${this.code}${this.text === "" ? "" : ` (${this.text})`}`
  }
}

/** A foreground job ended in WORK_FAIL (or was cancelled, or dropped after too many retries). */
export class GearmanJobFailed extends Data.TaggedError("GearmanJobFailed")<{
  readonly handle: string
  readonly functionName: string
}> {
  override get message(): string {
    return `${this.functionName} job ${this.handle} failed`
  }
}

/** A foreground job ended in WORK_EXCEPTION; `data` is the worker's exception payload. */
export class GearmanJobException extends Data.TaggedError("GearmanJobException")<{
  readonly handle: string
  readonly functionName: string
  readonly data: Uint8Array
}> {
  override get message(): string {
    return `${this.functionName} job ${this.handle} raised an exception: ${quotePayload(this.data)}`
  }
}

/** A foreground job gave no outcome within the submit's `timeout` (it may still run). */
export class GearmanJobTimeout extends Data.TaggedError("GearmanJobTimeout")<{
  readonly handle: string
  readonly functionName: string
  readonly timeoutMs: number
}> {
  override get message(): string {
    return `no answer from ${this.functionName} within ${this.timeoutMs} ms`
  }
}

/** An admin command was refused (`ERR ...`) or its answer could not be parsed. */
export class GearmanAdminError extends Data.TaggedError("GearmanAdminError")<{
  readonly server: string
  readonly command: string
  readonly message: string
  /** The parser's error (a GearmanProtocolError), when the answer could not be read. */
  readonly cause?: unknown
}> {}

/** Handler outcome: end the job with WORK_FAIL. */
export class WorkFail extends Data.TaggedError("WorkFail")<{
  readonly reason?: string
  /** What made the handler fail the job (a rejected payload, the job's own failure), when known. */
  readonly cause?: unknown
}> {
  override get message(): string {
    return this.reason !== undefined && this.reason !== "" ? this.reason : "the handler failed the job"
  }
}

/** Handler outcome: end the job with WORK_EXCEPTION carrying `data`. */
export class WorkException extends Data.TaggedError("WorkException")<{
  readonly data: Uint8Array | string
}> {
  override get message(): string {
    return `the handler raised an exception: ${quotePayload(this.data)}`
  }
}

/** Errors a submit can end in. */
export type GearmanSubmitError =
  | GearmanInvalidArgument
  | GearmanConnectionError
  | GearmanNoServerAvailable
  | GearmanServerError
  | GearmanJobFailed
  | GearmanJobException
  | GearmanJobTimeout
