// `npx vite-node bench/workerJson.ts [rounds] [decodes]`: µs per decode of the worker JSON as our
// QueueRunner (and the Perl one) sends it — `decodeWorkerJson` (the hand-written guard, the
// Schema for unusual payloads) against `decodeWorkerJsonWithSchema` alone — in alternating
// rounds, so both see the same machine load. Figures go to docs/performance.md.
import { Either } from "effect"
import { decodeWorkerJson, decodeWorkerJsonWithSchema, encodeWorkerJson, type StoredJob } from "../src/Job.js"

const rounds = Number(process.argv[2] ?? 5)
const decodes = Number(process.argv[3] ?? 100_000)

// 100 distinct jobs with an 80-byte arg (the size bench/run.ts sends), as UTF-8 bytes off the wire.
const payloads: ReadonlyArray<Buffer> = Array.from({ length: 100 }, (_, i) => {
  const job: StoredJob = {
    dbid: 1 + (i % 4),
    jobid: 1_000_000 + i,
    funcname: "bench_work",
    arg: Buffer.from(`payload ${i} ${"x".repeat(70)}`.slice(0, 80)),
    uniqkey: i % 2 === 0 ? null : `key-${i}`,
    coalesce: null,
    runAfter: 1_790_000_000 + i,
    flag: "shim",
    failcount: i % 3
  }
  return Buffer.from(encodeWorkerJson(job), "utf8")
})

const time = (label: string, decode: (payload: Buffer) => Either.Either<StoredJob, unknown>): number => {
  let ok = 0
  const t0 = performance.now()
  for (let i = 0; i < decodes; i++) if (Either.isRight(decode(payloads[i % payloads.length]!))) ok++
  const us = ((performance.now() - t0) * 1000) / decodes
  if (ok !== decodes) throw new Error(`${label}: ${decodes - ok} payloads rejected`)
  return us
}

const guard = (p: Buffer) => decodeWorkerJson(p)
const schema = (p: Buffer) => decodeWorkerJsonWithSchema(p.toString("utf8"))
// Warm-up: let both paths be compiled before timing.
time("guard", guard)
time("schema", schema)
for (let r = 1; r <= rounds; r++) {
  const g = time("guard", guard)
  const s = time("schema", schema)
  console.log(
    `round ${r}: guard ${g.toFixed(2)} µs/decode, Schema ${s.toFixed(2)} µs/decode (×${(s / g).toFixed(1)})`
  )
}
