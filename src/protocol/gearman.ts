// The Gearman binary protocol: packet types, encoding, and a streaming decoder that takes
// arbitrary chunking and fails (never throws) on bad magic, unknown types or oversized frames.
import { Either } from "effect"
import { quoteBounded } from "../text.js"
import { GearmanInvalidArgument, GearmanProtocolError } from "../gearman/errors.js"

export const PacketType = {
  CAN_DO: 1,
  CANT_DO: 2,
  RESET_ABILITIES: 3,
  PRE_SLEEP: 4,
  NOOP: 6,
  SUBMIT_JOB: 7,
  JOB_CREATED: 8,
  GRAB_JOB: 9,
  NO_JOB: 10,
  JOB_ASSIGN: 11,
  WORK_STATUS: 12,
  WORK_COMPLETE: 13,
  WORK_FAIL: 14,
  GET_STATUS: 15,
  ECHO_REQ: 16,
  ECHO_RES: 17,
  SUBMIT_JOB_BG: 18,
  ERROR: 19,
  STATUS_RES: 20,
  SUBMIT_JOB_HIGH: 21,
  SET_CLIENT_ID: 22,
  CAN_DO_TIMEOUT: 23,
  ALL_YOURS: 24,
  WORK_EXCEPTION: 25,
  OPTION_REQ: 26,
  OPTION_RES: 27,
  WORK_DATA: 28,
  WORK_WARNING: 29,
  GRAB_JOB_UNIQ: 30,
  JOB_ASSIGN_UNIQ: 31,
  SUBMIT_JOB_HIGH_BG: 32,
  SUBMIT_JOB_LOW: 33,
  SUBMIT_JOB_LOW_BG: 34,
  SUBMIT_JOB_SCHED: 35,
  SUBMIT_JOB_EPOCH: 36,
  SUBMIT_REDUCE_JOB: 37,
  SUBMIT_REDUCE_JOB_BACKGROUND: 38,
  GRAB_JOB_ALL: 39,
  JOB_ASSIGN_ALL: 40,
  GET_STATUS_UNIQUE: 41,
  STATUS_RES_UNIQUE: 42
} as const

export type PacketType = (typeof PacketType)[keyof typeof PacketType]

/** Number of arguments per type; the last one takes the rest of the frame and may hold NULs. */
const argCounts: ReadonlyArray<number | undefined> = (() => {
  const t = PacketType
  const counts: Array<number | undefined> = []
  const set = (n: number, ...types: ReadonlyArray<number>) => types.forEach((type) => (counts[type] = n))
  set(0, t.RESET_ABILITIES, t.PRE_SLEEP, t.NOOP, t.GRAB_JOB, t.NO_JOB, t.ALL_YOURS, t.GRAB_JOB_UNIQ, t.GRAB_JOB_ALL)
  set(1, t.CAN_DO, t.CANT_DO, t.JOB_CREATED, t.WORK_FAIL, t.GET_STATUS, t.ECHO_REQ, t.ECHO_RES, t.SET_CLIENT_ID)
  set(1, t.OPTION_REQ, t.OPTION_RES, t.GET_STATUS_UNIQUE)
  set(2, t.WORK_COMPLETE, t.ERROR, t.CAN_DO_TIMEOUT, t.WORK_EXCEPTION, t.WORK_DATA, t.WORK_WARNING)
  set(3, t.SUBMIT_JOB, t.JOB_ASSIGN, t.WORK_STATUS, t.SUBMIT_JOB_BG, t.SUBMIT_JOB_HIGH, t.SUBMIT_JOB_HIGH_BG)
  set(3, t.SUBMIT_JOB_LOW, t.SUBMIT_JOB_LOW_BG)
  set(4, t.JOB_ASSIGN_UNIQ, t.SUBMIT_JOB_EPOCH)
  set(5, t.STATUS_RES, t.SUBMIT_REDUCE_JOB, t.SUBMIT_REDUCE_JOB_BACKGROUND, t.JOB_ASSIGN_ALL)
  set(6, t.STATUS_RES_UNIQUE)
  set(8, t.SUBMIT_JOB_SCHED)
  return counts
})()

export const isKnownType = (type: number): type is PacketType => argCounts[type] !== undefined

export const typeName = (type: number): string =>
  Object.entries(PacketType).find(([, n]) => n === type)?.[0] ?? `TYPE_${type}`

export type Magic = "REQ" | "RES"

export interface Packet {
  readonly magic: Magic
  readonly type: PacketType
  readonly args: ReadonlyArray<Buffer>
  /**
   * Set on a job assignment (JOB_ASSIGN*) over the frame limit: its bytes were skipped, `args`
   * holds only the handle and the function. The worker fails that one job; cutting the
   * connection instead would hand the job to the next worker, and the next, forever.
   */
  readonly oversized?: number
}

const ASSIGNMENTS: ReadonlySet<number> = new Set([
  PacketType.JOB_ASSIGN,
  PacketType.JOB_ASSIGN_UNIQ,
  PacketType.JOB_ASSIGN_ALL
])
/** Bytes kept of a skipped assignment: its handle and function name lie within them. */
const OVERSIZED_PREFIX = 1024

const MAGIC_REQ = Buffer.from([0, 0x52, 0x45, 0x51])
const MAGIC_RES = Buffer.from([0, 0x52, 0x45, 0x53])
const NUL = Buffer.from([0])
export const HEADER_SIZE = 12
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024

export type Arg = Uint8Array | string

const toBuffer = (arg: Arg): Buffer =>
  typeof arg === "string"
    ? Buffer.from(arg, "utf8")
    : Buffer.isBuffer(arg)
    ? arg
    : Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength)

/**
 * Encodes one packet: 12-byte header then the arguments joined by single NULs. A NUL inside an
 * argument other than the last would shift the ones after it (another function, another unique,
 * a corrupt packet): refused, nothing is encoded. Every argument a caller supplies goes through here.
 */
export const encode = (
  magic: Magic,
  type: PacketType,
  args: ReadonlyArray<Arg> = []
): Either.Either<Buffer, GearmanInvalidArgument> => {
  const parts = args.map(toBuffer)
  for (let i = 0; i < parts.length - 1; i++) {
    if (parts[i]!.includes(0)) {
      return Either.left(
        new GearmanInvalidArgument({
          message: `${typeName(type)} argument ${i + 1} holds a NUL byte (only the last argument may)`
        })
      )
    }
  }
  return Either.right(write(magic, type, parts))
}

/** `encode` for a request. */
export const checkedRequest = (type: PacketType, args: ReadonlyArray<Arg> = []) => encode("REQ", type, args)

/**
 * Packets whose arguments hold no NUL before the last by construction (constants, numbers, and
 * handles, names and uniques split from a received frame at its NULs), so nothing is checked.
 */
export const request = (type: PacketType, args: ReadonlyArray<Arg> = []): Buffer =>
  write("REQ", type, args.map(toBuffer))
export const response = (type: PacketType, args: ReadonlyArray<Arg> = []): Buffer =>
  write("RES", type, args.map(toBuffer))

const write = (magic: Magic, type: PacketType, parts: ReadonlyArray<Buffer>): Buffer => {
  const size = parts.reduce((n, p) => n + p.length, 0) + Math.max(0, parts.length - 1)
  const out = Buffer.allocUnsafe(HEADER_SIZE + size)
  ;(magic === "REQ" ? MAGIC_REQ : MAGIC_RES).copy(out, 0)
  out.writeUInt32BE(type, 4)
  out.writeUInt32BE(size, 8)
  let at = HEADER_SIZE
  parts.forEach((p, i) => {
    if (i > 0) at += NUL.copy(out, at)
    at += p.copy(out, at)
  })
  return out
}

/**
 * Why `name` cannot be a Gearman function name here, or undefined: empty, or holding whitespace
 * or control characters (the admin protocol splits its lines on them: a name with a tab and a
 * newline forges `status` lines for other functions), or an unpaired surrogate (not UTF-8).
 */
export const functionNameProblem = (name: string): string | undefined => {
  if (typeof name !== "string" || name.length === 0) return "function name is empty"
  // Fast path for the usual names (printable ASCII): this runs for every submit.
  let i = 0
  while (i < name.length && name.charCodeAt(i) > 0x20 && name.charCodeAt(i) < 0x7f) i++
  if (i === name.length) return undefined
  const bad = /[\p{Cc}\p{Z}\s\p{Cs}]/u.exec(name)
  if (bad === null) return undefined
  return `function name ${quoteBounded(name)} holds U+${
    bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")
  } at index ${bad.index}: no whitespace or control characters`
}

/**
 * Splits a frame's data into the type's arguments. Tolerant where gearmand is sloppy:
 * a WORK_FAIL handle may carry a trailing NUL (an EXCEPTION downgraded for a client without
 * the `exceptions` option); a packet with no arguments ignores stray data.
 */
export const splitArgs = (
  type: PacketType,
  data: Buffer
): Either.Either<ReadonlyArray<Buffer>, GearmanProtocolError> => {
  const count = argCounts[type] ?? 0
  if (count === 0) return Either.right([])
  if (type === PacketType.WORK_FAIL) {
    const end = data.length > 0 && data[data.length - 1] === 0 ? data.length - 1 : data.length
    return Either.right([data.subarray(0, end)])
  }
  const args: Array<Buffer> = []
  let start = 0
  for (let i = 0; i < count - 1; i++) {
    const nul = data.indexOf(0, start)
    if (nul < 0) {
      return Either.left(
        new GearmanProtocolError({
          reason: "Malformed",
          message: `${typeName(type)} needs ${count} arguments, got ${i + 1}`
        })
      )
    }
    args.push(data.subarray(start, nul))
    start = nul + 1
  }
  args.push(data.subarray(start))
  return Either.right(args)
}

/** What one push decoded: the complete packets, then the error that broke the stream, if any. */
export interface Decoded {
  readonly packets: ReadonlyArray<Packet>
  readonly error: GearmanProtocolError | undefined
}

/**
 * Bytes received and not yet consumed, kept as the chunks they arrived in. A frame is joined
 * once, when it is taken whole (re-joining on every chunk made a large packet cost time
 * quadratic in its size).
 */
export class ByteQueue {
  private chunks: Array<Buffer> = []
  private size = 0

  get length(): number {
    return this.size
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    this.size += chunk.length
  }

  byteAt(i: number): number | undefined {
    for (const chunk of this.chunks) {
      if (i < chunk.length) return chunk[i]
      i -= chunk.length
    }
    return undefined
  }

  /** The first `n` bytes (n ≤ length) in one buffer, joining only the chunks they span. */
  peek(n: number): Buffer {
    const first = this.chunks[0]!
    if (first.length >= n) return first
    let count = 0
    for (let covered = 0; covered < n; count++) covered += this.chunks[count]!.length
    const joined = Buffer.concat(this.chunks.slice(0, count))
    this.chunks.splice(0, count, joined)
    return joined
  }

  /** Discards the first `n` bytes (n ≤ length) without joining anything. */
  drop(n: number): void {
    this.size -= n
    while (n > 0) {
      const first = this.chunks[0]!
      if (first.length <= n) {
        n -= first.length
        this.chunks.shift()
      } else {
        this.chunks[0] = first.subarray(n)
        n = 0
      }
    }
  }

  take(n: number): Buffer {
    const first = this.peek(n)
    if (first.length === n) this.chunks.shift()
    else this.chunks[0] = first.subarray(n)
    this.size -= n
    return first.subarray(0, n)
  }

  /** Where `byte` first occurs at or after `from`, or -1: callers pass what they already scanned. */
  indexOf(byte: number, from = 0): number {
    let base = 0
    for (const chunk of this.chunks) {
      if (from < base + chunk.length) {
        const at = chunk.indexOf(byte, Math.max(0, from - base))
        if (at >= 0) return base + at
      }
      base += chunk.length
    }
    return -1
  }

  clear(): void {
    this.chunks = []
    this.size = 0
  }
}

/**
 * Streaming decoder for binary frames. Holds at most one header plus one frame of bytes
 * (bounded by `maxFrame`); after an error it stays failed, since the stream is desynchronised.
 * Packets complete before an error are returned with it, so what a peer sees never depends on
 * how TCP chunked the bytes (a JOB_CREATED followed by garbage in one segment still counts).
 */
export class Decoder {
  private readonly input = new ByteQueue()
  private failure: GearmanProtocolError | undefined

  constructor(
    readonly expect: Magic,
    readonly maxFrame: number = DEFAULT_MAX_FRAME
  ) {}

  get bufferedBytes(): number {
    return this.input.length
  }

  /** Bytes of an oversized assignment still to be skipped. */
  private skip = 0

  /** Feeds bytes; returns every complete packet, and the error that broke the stream after them. */
  push(chunk: Uint8Array): Decoded {
    if (this.failure) return { packets: [], error: this.failure }
    this.input.push(chunk)
    const out: Array<Packet> = []
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.input.length)
        this.input.drop(n)
        this.skip -= n
        if (this.skip > 0) break
      }
      const header = readHeader(this.input, this.maxFrame, this.expect)
      if (header === undefined) break
      if (Either.isLeft(header)) {
        const oversized = this.oversizedAssignment()
        if (oversized === "wait") break
        if (oversized === undefined) return this.fail(out, header.left)
        out.push(oversized)
        continue
      }
      const { magic, type, size } = header.right
      if (this.input.length < HEADER_SIZE + size) break
      const frame = this.input.take(HEADER_SIZE + size)
      const args = splitArgs(type, frame.subarray(HEADER_SIZE))
      if (Either.isLeft(args)) return this.fail(out, args.left)
      out.push({ magic, type, args: args.right })
    }
    return { packets: out, error: undefined }
  }

  /**
   * At a header over the frame limit: if it is a job assignment (to a worker), takes its first
   * bytes as a packet marked `oversized` and skips the rest ("wait" until those first bytes are
   * here); anything else is left to break the stream.
   */
  private oversizedAssignment(): Packet | "wait" | undefined {
    if (this.expect !== "RES" || this.input.length < HEADER_SIZE) return undefined
    const head = this.input.peek(HEADER_SIZE)
    const type = head.readUInt32BE(4)
    const size = head.readUInt32BE(8)
    if (!ASSIGNMENTS.has(type) || size <= this.maxFrame) return undefined
    const kept = Math.min(size, OVERSIZED_PREFIX)
    if (this.input.length < HEADER_SIZE + kept) return "wait"
    const prefix = this.input.take(HEADER_SIZE + kept).subarray(HEADER_SIZE)
    this.skip = size - kept
    const handleEnd = prefix.indexOf(0)
    const fnEnd = handleEnd < 0 ? -1 : prefix.indexOf(0, handleEnd + 1)
    // Without the two NULs in the kept bytes the handle is unknown: nothing can be answered.
    if (fnEnd < 0) return undefined
    return {
      magic: "RES",
      type: type as PacketType,
      args: [Buffer.from(prefix.subarray(0, handleEnd)), Buffer.from(prefix.subarray(handleEnd + 1, fnEnd))],
      oversized: size
    }
  }

  private fail(packets: ReadonlyArray<Packet>, error: GearmanProtocolError): Decoded {
    this.failure = error
    this.input.clear()
    return { packets, error }
  }
}

export interface FrameHeader {
  readonly magic: Magic
  readonly type: PacketType
  readonly size: number
}

/**
 * The header at the front of `input` once enough bytes are there to judge it (undefined
 * before): bad magic (or not `expect`'s), an unknown type and a frame over `maxFrame` break
 * the stream.
 */
export const readHeader = (
  input: ByteQueue,
  maxFrame: number,
  expect?: Magic
): Either.Either<FrameHeader, GearmanProtocolError> | undefined => {
  if (input.length < 4) return undefined
  const head = input.peek(Math.min(input.length, HEADER_SIZE))
  const magic = head[0] === 0 && head[1] === 0x52 && head[2] === 0x45
    ? head[3] === 0x51 ? "REQ" : head[3] === 0x53 ? "RES" : undefined
    : undefined
  if (magic === undefined || (expect !== undefined && magic !== expect)) {
    const wanted = expect === undefined ? "\\0REQ or \\0RES" : `\\0${expect}`
    return Either.left(
      new GearmanProtocolError({
        reason: "BadMagic",
        message: `expected ${wanted} magic, got ${head.subarray(0, 4).toString("hex")}`
      })
    )
  }
  if (input.length < HEADER_SIZE) return undefined
  const type = head.readUInt32BE(4)
  if (!isKnownType(type))
    return Either.left(new GearmanProtocolError({ reason: "UnknownType", message: `unknown packet type ${type}` }))
  const size = head.readUInt32BE(8)
  if (size > maxFrame) {
    return Either.left(
      new GearmanProtocolError({
        reason: "FrameTooLarge",
        message: `frame of ${size} bytes exceeds the limit of ${maxFrame}`
      })
    )
  }
  return Either.right({ magic, type, size })
}
