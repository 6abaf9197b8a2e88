// The Gearman binary protocol: packet types, encoding, and a streaming decoder that takes
// arbitrary chunking and fails (never throws) on bad magic, unknown types or oversized frames.
import { Either } from "effect"
import { GearmanProtocolError } from "./errors.js"

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
}

const MAGIC_REQ = Buffer.from([0, 0x52, 0x45, 0x51])
const MAGIC_RES = Buffer.from([0, 0x52, 0x45, 0x53])
const NUL = Buffer.from([0])
export const HEADER_SIZE = 12
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024

export type Arg = Uint8Array | string

const toBuffer = (arg: Arg): Buffer =>
  typeof arg === "string" ? Buffer.from(arg, "utf8") : Buffer.isBuffer(arg) ? arg : Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength)

/** Encodes one packet: 12-byte header then the arguments joined by single NULs. */
export const encode = (magic: Magic, type: PacketType, args: ReadonlyArray<Arg> = []): Buffer => {
  const parts = args.map(toBuffer)
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

export const request = (type: PacketType, args: ReadonlyArray<Arg> = []): Buffer => encode("REQ", type, args)
export const response = (type: PacketType, args: ReadonlyArray<Arg> = []): Buffer => encode("RES", type, args)

/**
 * Splits a frame's data into the type's arguments. Tolerant where gearmand is sloppy:
 * a WORK_FAIL handle may carry a trailing NUL (an EXCEPTION downgraded for a client without
 * the `exceptions` option); a packet with no arguments ignores stray data.
 */
export const splitArgs = (type: PacketType, data: Buffer): Either.Either<ReadonlyArray<Buffer>, GearmanProtocolError> => {
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
        new GearmanProtocolError({ reason: "Malformed", message: `${typeName(type)} needs ${count} arguments, got ${i + 1}` })
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
 * Streaming decoder for binary frames. Holds at most one header plus one frame of bytes
 * (bounded by `maxFrame`); after an error it stays failed, since the stream is desynchronised.
 * Packets complete before an error are returned with it, so what a peer sees never depends on
 * how TCP chunked the bytes (a JOB_CREATED followed by garbage in one segment still counts).
 */
export class Decoder {
  private chunks: Array<Buffer> = []
  private buffered = 0
  private failure: GearmanProtocolError | undefined

  constructor(
    readonly expect: Magic,
    readonly maxFrame: number = DEFAULT_MAX_FRAME
  ) {}

  get bufferedBytes(): number {
    return this.buffered
  }

  /** Feeds bytes; returns every complete packet, and the error that broke the stream after them. */
  push(chunk: Uint8Array): Decoded {
    if (this.failure) return { packets: [], error: this.failure }
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
      this.buffered += chunk.length
    }
    const out: Array<Packet> = []
    for (;;) {
      if (this.buffered < 4) break
      const head = this.peek(Math.min(this.buffered, HEADER_SIZE))
      const magic = head[0] === 0 && head[1] === 0x52 && head[2] === 0x45 ? head[3] === 0x51 ? "REQ" : head[3] === 0x53 ? "RES" : undefined : undefined
      if (magic !== this.expect) {
        return this.fail(out, new GearmanProtocolError({ reason: "BadMagic", message: `expected \\0${this.expect} magic, got ${head.subarray(0, 4).toString("hex")}` }))
      }
      if (head.length < HEADER_SIZE) break
      const type = head.readUInt32BE(4)
      if (!isKnownType(type)) {
        return this.fail(out, new GearmanProtocolError({ reason: "UnknownType", message: `unknown packet type ${type}` }))
      }
      const size = head.readUInt32BE(8)
      if (size > this.maxFrame) {
        return this.fail(out, new GearmanProtocolError({ reason: "FrameTooLarge", message: `frame of ${size} bytes exceeds the limit of ${this.maxFrame}` }))
      }
      if (this.buffered < HEADER_SIZE + size) break
      const frame = this.take(HEADER_SIZE + size)
      const args = splitArgs(type, frame.subarray(HEADER_SIZE))
      if (Either.isLeft(args)) return this.fail(out, args.left)
      out.push({ magic, type, args: args.right })
    }
    return { packets: out, error: undefined }
  }

  private fail(packets: ReadonlyArray<Packet>, error: GearmanProtocolError): Decoded {
    this.failure = error
    this.chunks = []
    this.buffered = 0
    return { packets, error }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!
    const joined = Buffer.concat(this.chunks)
    this.chunks = [joined]
    return joined
  }

  private take(n: number): Buffer {
    const first = this.peek(n)
    const frame = first.subarray(0, n)
    if (first.length === n) this.chunks.shift()
    else this.chunks[0] = first.subarray(n)
    this.buffered -= n
    return frame
  }
}
