// Settings shared by the property suites in test/fuzz/: a fixed seed and a modest number of runs
// by default (reproducible and quick in CI); FUZZ_SEED / FUZZ_RUNS explore further. A failure
// prints fast-check's seed and path: rerun with FUZZ_SEED=<seed> to replay it.
import { FastCheck as fc } from "effect"
import { request, response, type Arg, type Magic, type PacketType } from "../../src/protocol/gearman.js"

const envInt = (name: string): number | undefined => {
  const value = process.env[name]
  if (value === undefined || value.trim() === "") return undefined
  const n = Number(value)
  if (!Number.isSafeInteger(n)) throw new Error(`${name}=${value} is not an integer`)
  return n
}

/** The seed every property starts from. */
export const fuzzSeed: number = envInt("FUZZ_SEED") ?? 20261202

/** fast-check parameters for a property run `runs` times by default (scaled by FUZZ_RUNS). */
export const fuzzParams = (runs: number): fc.Parameters<unknown> => {
  const wanted = envInt("FUZZ_RUNS")
  return { seed: fuzzSeed, numRuns: wanted === undefined ? runs : Math.max(1, wanted) }
}

/** Runs a synchronous property with the suite's seed. */
export const check = <Ts extends Array<unknown>>(runs: number, property: fc.IProperty<Ts>): void =>
  fc.assert(property, fuzzParams(runs) as fc.Parameters<Ts>)

/** Runs an asynchronous property with the suite's seed. */
export const checkAsync = <Ts extends Array<unknown>>(runs: number, property: fc.IAsyncProperty<Ts>): Promise<void> =>
  fc.assert(property, fuzzParams(runs) as fc.Parameters<Ts>)

/** A deterministic random source for a case, from a fast-check-drawn integer. */
export const prng = (seed: number) => {
  let s = seed >>> 0 || 1
  return (): number => {
    // xorshift32
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s / 0x100000000
  }
}

/** Splits bytes into chunks whose sizes come from `sizes` (cycled; each at least 1). */
export const chunked = (bytes: Buffer, sizes: ReadonlyArray<number>): ReadonlyArray<Buffer> => {
  const out: Array<Buffer> = []
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes.length === 0 ? bytes.length : sizes[i % sizes.length]!)
    out.push(bytes.subarray(at, at + n))
    at += n
  }
  return out
}

/** A packet written as given (`request` / `response`: no check of NULs in the arguments). */
export const rawPacket = (magic: Magic, type: PacketType, args: ReadonlyArray<Arg> = []): Buffer =>
  magic === "REQ" ? request(type, args) : response(type, args)
