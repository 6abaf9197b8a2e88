// Property suite for the worker JSON (`decodeWorkerJson` in src/Job.ts): random bytes, random
// JSON values and worker-shaped objects with random field values give a Job or a typed
// InvalidJob, never a throw; the fast path and the Schema decoder agree on everything (the guard
// `fastWorkerJob` alone, and `decodeWorkerJson` built on it); a Job survives encode → decode
// unchanged.
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { InvalidJob } from "../../src/errors.js"
import {
  decodeWorkerJson,
  decodeWorkerJsonWithSchema,
  encodeWorkerJson,
  fastWorkerJob,
  MAX_REJECTION_QUOTE,
  type StoredJob
} from "../../src/Job.js"
import { check } from "../support/fuzz.js"

const isCount = (n: number) => Number.isSafeInteger(n) && n >= 0

/** A field value as a writer (or an attacker) may send it. */
const anyValue = fc.oneof(
  fc.constantFrom(0, 1, -1, 1.5, 2 ** 53, 1e308, "7", " 7 ", "", "shim", "controller", "07", "1e3", null, true, [], {}),
  fc.integer(),
  fc.string({ maxLength: 8 }),
  fc.jsonValue({ maxDepth: 2 })
)
const workerShaped = fc.record(
  {
    jobid: anyValue,
    dbid: anyValue,
    funcname: anyValue,
    arg: anyValue,
    uniqkey: anyValue,
    coalesce: anyValue,
    run_after: anyValue,
    flag: anyValue,
    failcount: anyValue,
    extra: anyValue
  },
  { requiredKeys: [] }
)
const payloads = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 100 }),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? "null"),
  workerShaped.map((o) => JSON.stringify(o))
)

/** Checks a decode; returns it for comparison. */
const decode = (payload: string | Uint8Array): Either.Either<StoredJob, InvalidJob> => {
  const result = decodeWorkerJson(payload)
  if (Either.isLeft(result)) {
    assert.instanceOf(result.left, InvalidJob)
    assert.notInclude(result.left.message, "\n    at ", "a stack trace in the rejection")
    return result
  }
  const job = result.right
  assert.isTrue([job.jobid, job.dbid, job.runAfter, job.failcount].every(isCount))
  assert.isString(job.funcname)
  assert.include(["shim", "controller"], job.flag)
  assert.instanceOf(job.arg, Uint8Array)
  return result
}
const comparable = (r: Either.Either<StoredJob, InvalidJob>) => Either.map(r, (job) => ({ ...job, arg: [...job.arg] }))

const jobArb: fc.Arbitrary<StoredJob> = fc.record({
  dbid: fc.integer({ min: 1, max: 2 ** 31 }),
  jobid: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  funcname: fc.string({ minLength: 1, maxLength: 20 }),
  arg: fc.uint8Array({ maxLength: 100 }),
  uniqkey: fc.option(fc.string({ maxLength: 20 }), { nil: null }),
  coalesce: fc.option(fc.string({ maxLength: 20 }), { nil: null }),
  runAfter: fc.integer({ min: 0, max: 4294967295 }),
  flag: fc.constantFrom("shim" as const, "controller" as const),
  failcount: fc.integer({ min: 0, max: 255 })
})

const WORKER_KEYS = ["jobid", "dbid", "funcname", "arg", "uniqkey", "coalesce", "run_after", "flag", "failcount"]

/**
 * A job's worker JSON with up to three fields replaced by any value or removed, and maybe an extra
 * key: mostly the guard's usual shape, and every near miss of it (numeric strings, NULL arg, empty
 * flag, wrong types), where the guard must hand over to the Schema.
 */
const nearWorkerJson = fc.tuple(
  jobArb,
  fc.array(fc.tuple(fc.constantFrom(...WORKER_KEYS, "extra"), fc.option(anyValue, { nil: undefined })), {
    maxLength: 3
  })
).map(([job, edits]) => {
  const fields: Record<string, unknown> = JSON.parse(encodeWorkerJson(job))
  for (const [key, value] of edits) {
    if (value === undefined) delete fields[key]
    else fields[key] = value
  }
  return JSON.stringify(fields)
})

describe("fuzz: the worker JSON", () => {
  it("random payloads decode to a sane Job or a typed InvalidJob, never a throw", () =>
    check(
      3000,
      fc.property(payloads, (payload) => {
        decode(payload)
        decode(Buffer.from(payload))
      })
    ))

  it("the fast path and the Schema decoder agree on every payload", () =>
    check(
      3000,
      fc.property(payloads, (payload) => {
        const text = typeof payload === "string" ? payload : payload.toString("utf8")
        const fast = comparable(decodeWorkerJson(text))
        const slow = comparable(decodeWorkerJsonWithSchema(text))
        assert.strictEqual(fast._tag, slow._tag, text)
        if (Either.isRight(fast) && Either.isRight(slow)) assert.deepStrictEqual(fast.right, slow.right, text)
      })
    ))

  it("the guard accepts only what the Schema accepts, as the same Job; with the Schema after it, exactly the same", () => {
    let guarded = 0
    let handedOver = 0
    check(
      3000,
      fc.property(fc.oneof(nearWorkerJson, payloads), (payload) => {
        const text = typeof payload === "string" ? payload : payload.toString("utf8")
        const schema = comparable(decodeWorkerJsonWithSchema(text))
        const guard = fastWorkerJob(text)
        if (guard === undefined) handedOver++
        else {
          guarded++
          assert.deepStrictEqual(schema, Either.right({ ...guard, arg: [...guard.arg] }), text)
        }
        // What a worker runs: the guard, then the Schema for whatever the guard hands over.
        assert.deepStrictEqual(comparable(decodeWorkerJson(text)), schema, text)
      })
    )
    // Both paths were exercised (a property that never reached the guard would prove nothing).
    assert.isAbove(guarded, 300)
    assert.isAbove(handedOver, 300)
  })

  it("a rejection's reason stays short whatever the payload's size", () =>
    check(
      100,
      fc.property(
        fc.constantFrom("jobid", "dbid", "funcname", "arg", "flag"),
        fc.integer({ min: 1, max: 5000 }),
        (key, n) => {
          // A wrong-typed field of n elements was quoted whole in the reason (and in its log line).
          const payload = JSON.stringify({
            jobid: 1,
            dbid: 1,
            funcname: "f",
            arg: "",
            [key]: Array.from({ length: n }, (_, i) => i)
          })
          const result = decodeWorkerJson(payload)
          assert.isTrue(Either.isLeft(result))
          if (Either.isLeft(result)) assert.isAtMost(result.left.message.length, MAX_REJECTION_QUOTE + 200)
        }
      )
    ))

  it("a job survives encode and decode unchanged", () =>
    check(
      1000,
      fc.property(jobArb, (job) => {
        // As the worker receives it: the JSON's UTF-8 bytes.
        const back = Either.getOrThrow(decode(Buffer.from(encodeWorkerJson(job), "utf8")))
        assert.deepStrictEqual({ ...back, arg: [...back.arg] }, { ...job, arg: [...job.arg] })
      })
    ))
})
