// Property suite for the binary protocol's streaming Decoder and encoder (src/protocol/gearman.ts):
// random packets, random bytes and mutated streams in random chunkings. The Decoder must never
// throw, never buffer more than a frame, fail only with its typed error (and stay failed), and
// see the same packets whatever the chunking.
import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { GearmanProtocolError } from "../../src/gearman/errors.js"
import { Decoder, HEADER_SIZE, isKnownType, PacketType, type Magic, type Packet } from "../../src/protocol/gearman.js"
import { check, chunked, rawPacket } from "../support/fuzz.js"

const MAX_FRAME = 2048
const argCount = (type: PacketType): number => {
  // The count the decoder splits into: learnt from a frame with NULs to spare.
  const probe = new Decoder("RES", MAX_FRAME).push(rawPacket("RES", type, ["a\0b\0c\0d\0e\0f\0g\0h\0i"]))
  return probe.packets[0]?.args.length ?? 0
}
const types = Object.values(PacketType)
const counts = new Map(types.map((t) => [t, argCount(t)]))

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a))
const noNul = (max: number) => bytes(max).map((b) => Buffer.from(b.filter((x) => x !== 0)))

/** A packet the encoder can express: every argument but the last free of NULs. */
const packetArb = (magic: Magic): fc.Arbitrary<Packet> =>
  fc.constantFrom(...types).chain((type) => {
    const n = counts.get(type)!
    if (n === 0) return fc.constant<Packet>({ magic, type, args: [] })
    // WORK_FAIL's single argument loses one trailing NUL (gearmand's downgraded EXCEPTION).
    const last = type === PacketType.WORK_FAIL ? noNul(40) : bytes(200)
    return fc.tuple(fc.array(noNul(40), { minLength: n - 1, maxLength: n - 1 }), last).map(([head, tail]) => ({
      magic,
      type,
      args: [...head, tail]
    }))
  })

const chunkSizes = fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 })

interface Run {
  readonly packets: ReadonlyArray<Packet>
  readonly error: GearmanProtocolError | undefined
}

/** Feeds the chunks; checks the invariants every push must keep. */
const feed = (expect: Magic, chunks: ReadonlyArray<Buffer>, maxFrame = MAX_FRAME): Run => {
  const decoder = new Decoder(expect, maxFrame)
  const packets: Array<Packet> = []
  for (const chunk of chunks) {
    const { packets: decoded, error } = decoder.push(chunk)
    assert.isAtMost(decoder.bufferedBytes, HEADER_SIZE + maxFrame + chunk.length, "buffered past one frame")
    for (const packet of decoded) {
      assert.isTrue(isKnownType(packet.type))
      assert.strictEqual(packet.magic, expect)
      packets.push(packet)
    }
    if (error !== undefined) {
      assert.instanceOf(error, GearmanProtocolError)
      assert.include(["BadMagic", "UnknownType", "FrameTooLarge", "Malformed"], error.reason)
      // Desynchronised: it stays failed, whatever comes next, and holds nothing.
      const after = decoder.push(rawPacket(expect, PacketType.NOOP))
      assert.strictEqual(after.error, error)
      assert.strictEqual(after.packets.length, 0)
      assert.strictEqual(decoder.bufferedBytes, 0)
      return { packets, error }
    }
  }
  return { packets, error: undefined }
}

const same = (a: Run, b: Run) => {
  assert.deepStrictEqual(a.packets.map(show), b.packets.map(show))
  assert.strictEqual(a.error?.reason, b.error?.reason)
}
const show = (p: Packet) => `${p.magic} ${p.type} ${p.args.map((x) => x.toString("hex")).join(",")}`

/** Mutations of a valid stream: byte flips, cuts, insertions, header sizes. */
const mutate = (stream: Buffer, edits: ReadonlyArray<readonly [number, number, number]>): Buffer => {
  let out = Buffer.from(stream)
  for (const [kind, where, value] of edits) {
    if (out.length === 0) break
    const at = where % out.length
    switch (kind) {
      case 0:
        out[at] = value & 0xff
        break
      case 1:
        out = out.subarray(0, at)
        break
      case 2:
        out = Buffer.concat([out.subarray(0, at), Buffer.from([value & 0xff]), out.subarray(at)])
        break
      default:
        // a plausible header's size field: small, around the limit, or huge
        if (out.length >= at + 12)
          out.writeUInt32BE([value % 300, MAX_FRAME, MAX_FRAME + 1, 0xffffffff][kind % 4]!, at + 8)
    }
  }
  return out
}
const edits = fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.nat(), fc.nat()), { minLength: 1, maxLength: 4 })

describe("fuzz: binary protocol decoder", () => {
  for (const magic of ["RES", "REQ"] as const) {
    it(`valid ${magic} streams decode to what was encoded, whatever the chunking`, () =>
      check(
        300,
        fc.property(fc.array(packetArb(magic), { maxLength: 12 }), chunkSizes, (packets, sizes) => {
          const stream = Buffer.concat(packets.map((p) => rawPacket(p.magic, p.type, p.args)))
          const whole = feed(magic, [stream])
          assert.isUndefined(whole.error)
          assert.deepStrictEqual(whole.packets.map(show), packets.map(show))
          same(feed(magic, chunked(stream, sizes)), whole)
        })
      ))

    it(`mutated ${magic} streams fail typed or decode the same way in any chunking`, () =>
      check(
        400,
        fc.property(
          fc.array(packetArb(magic), { minLength: 1, maxLength: 8 }),
          edits,
          chunkSizes,
          (packets, changes, sizes) => {
            const stream = mutate(Buffer.concat(packets.map((p) => rawPacket(p.magic, p.type, p.args))), changes)
            same(feed(magic, chunked(stream, sizes)), feed(magic, [stream]))
          }
        )
      ))
  }

  it("random bytes never throw and never buffer more than a frame", () =>
    check(
      400,
      fc.property(
        bytes(600),
        chunkSizes,
        fc.constantFrom<Magic>("REQ", "RES"),
        fc.integer({ min: 0, max: 256 }),
        (data, sizes, magic, maxFrame) => {
          same(feed(magic, chunked(data, sizes), maxFrame), feed(magic, [data], maxFrame))
        }
      )
    ))

  it("a header announcing more than the limit fails before its body arrives (a job assignment waits for its handle, then is skipped)", () =>
    check(
      200,
      fc.property(fc.constantFrom(...types), fc.integer({ min: MAX_FRAME + 1, max: 0xffffffff }), (type, size) => {
        const header = rawPacket("RES", type, [])
        header.writeUInt32BE(size, 8)
        const run = feed("RES", [header])
        const assignment = type === PacketType.JOB_ASSIGN || type === PacketType.JOB_ASSIGN_UNIQ ||
          type === PacketType.JOB_ASSIGN_ALL
        if (!assignment) return assert.strictEqual(run.error?.reason, "FrameTooLarge")
        assert.isUndefined(run.error)
        assert.strictEqual(run.packets.length, 0)
        // Its first bytes hold no handle and function: nothing could answer it, so it breaks the stream.
        const prefix = Buffer.alloc(1024, 0x61)
        const then = feed("RES", [header, prefix])
        assert.strictEqual(then.error?.reason, "FrameTooLarge")
      })
    ))

  it("the encoder's header states the body's length and type", () =>
    check(
      300,
      fc.property(packetArb("REQ"), (p) => {
        const out = rawPacket(p.magic, p.type, p.args)
        assert.strictEqual(out.readUInt32BE(4), p.type)
        assert.strictEqual(out.readUInt32BE(8), out.length - HEADER_SIZE)
      })
    ))
})
