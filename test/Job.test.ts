import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either, Redacted } from "effect"
import { parseShardUrl, shardsFromUrls } from "../src/storage/targets.js"
import { crc32, hashBucket } from "../src/crc32.js"
import {
  boundedError,
  decodeWorkerJson,
  decodeWorkerJsonWithSchema,
  encodeWorkerJson,
  failureBackoffSeconds,
  funcnameProblem,
  jobState,
  LAST_ERROR_MAX_CHARS,
  MAX_RUN_AFTER,
  NEVER,
  parseHandle,
  resolveRunAt,
  uniqkeyProblem,
  validateNewJob,
  WORKER_JSON_MAX_BYTES,
  workerJsonBytes
} from "../src/Job.js"
import type { StoredJob } from "../src/Job.js"

const NOW = 1_700_000_000

describe("run-at language", () => {
  it("never, +N, absolute times and Durations", () => {
    assert.deepStrictEqual(resolveRunAt("never", NOW), Either.right(NEVER))
    assert.deepStrictEqual(resolveRunAt("+0", NOW), Either.right(NOW))
    assert.deepStrictEqual(resolveRunAt("+90", NOW), Either.right(NOW + 90))
    assert.deepStrictEqual(resolveRunAt("1234", NOW), Either.right(1234))
    assert.deepStrictEqual(resolveRunAt(1234, NOW), Either.right(1234))
    assert.deepStrictEqual(resolveRunAt(Duration.minutes(2), NOW), Either.right(NOW + 120))
    // Sub-second durations round up: a job never runs before its delay.
    assert.deepStrictEqual(resolveRunAt(Duration.millis(1500), NOW), Either.right(NOW + 2))
    assert.deepStrictEqual(resolveRunAt(MAX_RUN_AFTER, NOW), Either.right(MAX_RUN_AFTER))
  })

  it("anything else is InvalidSchedule, naming the input", () => {
    for (const bad of ["-5", "+1.5", "+", "soon", "", " 12", "12 ", "never ", "+-3", 1.5, -1, MAX_RUN_AFTER + 1, NaN]) {
      const result = resolveRunAt(bad, NOW)
      assert.isTrue(Either.isLeft(result), `${String(bad)} should be rejected`)
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "InvalidSchedule")
        assert.include(result.left.message, JSON.stringify(String(bad)))
      }
    }
    assert.isTrue(Either.isLeft(resolveRunAt(Duration.infinity, NOW)))
    assert.isTrue(Either.isLeft(resolveRunAt(`+${MAX_RUN_AFTER}`, NOW)))
  })

  it("failedJob's backoff: 2^failcount minutes, capped at a day", () => {
    assert.deepStrictEqual([1, 2, 3, 10, 11, 12, 255].map(failureBackoffSeconds), [
      120,
      240,
      480,
      61440,
      86400,
      86400,
      86400
    ])
  })
})

describe("worker JSON", () => {
  const job = {
    dbid: 2,
    jobid: 77,
    funcname: "resize",
    arg: Uint8Array.from([0, 1, 127, 128, 255]),
    uniqkey: "u",
    coalesce: null,
    runAfter: 123,
    flag: "controller" as const,
    failcount: 4
  }

  it.effect("round-trips, arg byte-exact as code points 0-255", () =>
    Effect.gen(function*() {
      const json = encodeWorkerJson(job)
      assert.strictEqual(
        json,
        "{\"jobid\":77,\"dbid\":2,\"funcname\":\"resize\",\"arg\":\"\\u0000\\u0001\u007f\u0080\u00ff\",\"uniqkey\":\"u\",\"coalesce\":null,\"run_after\":123,\"flag\":\"controller\",\"failcount\":4}"
      )
      const back = yield* decodeWorkerJson(json)
      assert.deepStrictEqual({ ...back, arg: [...back.arg] }, { ...job, arg: [...job.arg] })
      assert.deepStrictEqual(yield* decodeWorkerJson(Buffer.from(json)), back)
    }))

  it.effect("accepts what Perl writers send: numeric strings, NULL or empty flag, missing and extra keys", () =>
    Effect.gen(function*() {
      const fromOldDbd = yield* decodeWorkerJson(
        "{\"jobid\":\"12\",\"dbid\":\"1\",\"funcname\":\"f\",\"arg\":\"x\",\"run_after\":\"0\",\"failcount\":\"3\",\"flag\":null,\"extra\":[1]}"
      )
      assert.deepStrictEqual(
        [fromOldDbd.jobid, fromOldDbd.dbid, fromOldDbd.failcount, fromOldDbd.flag, fromOldDbd.uniqkey],
        [12, 1, 3, "shim", null]
      )
      // From the original Injector: relative run_after, no failcount/coalesce, `unique` key.
      const injected = yield* decodeWorkerJson(
        "{\"funcname\":\"hello\",\"arg\":\"caf\u00e9 \u2603\",\"unique\":\"k\",\"run_after\":1000,\"flag\":\"controller\",\"jobid\":5,\"dbid\":1}"
      )
      assert.strictEqual(injected.failcount, 0)
      assert.strictEqual(injected.flag, "controller")
      // A string with code points above 255 can only be text: taken as UTF-8.
      assert.strictEqual(Buffer.from(injected.arg).toString("utf8"), "café ☃")
      assert.strictEqual(
        (yield* decodeWorkerJson("{\"jobid\":1,\"dbid\":1,\"funcname\":\"f\",\"flag\":\"\"}")).flag,
        "shim"
      )
    }))

  it("the fast decoder and the Schema decoder agree on every payload", () => {
    const values = {
      jobid: [1, 0, 2 ** 53, -1, 1.5, "7", null],
      dbid: [1, 3, "2", undefined],
      funcname: ["f", "", 5],
      arg: ["x", "", "\u0000\u00ff", "caf\u00e9 \u2603", null, undefined, 3],
      uniqkey: ["k", "k ", "", null, undefined, 1],
      coalesce: ["c", null, undefined],
      run_after: [0, 123, "123", -5, undefined],
      flag: ["shim", "controller", "", null, undefined, "weird"],
      failcount: [0, 4, "4", undefined]
    }
    const keys = Object.keys(values) as Array<keyof typeof values>
    let checked = 0
    // Every value of each field against a base job (and a few pairs): both decoders, same answer.
    const base = {
      jobid: 1,
      dbid: 1,
      funcname: "f",
      arg: "x",
      uniqkey: null,
      coalesce: null,
      run_after: 0,
      flag: "shim",
      failcount: 0
    }
    const variants: Array<Record<string, unknown>> = [base]
    for (const k of keys) for (const v of values[k]) variants.push({ ...base, [k]: v })
    for (const v of values.arg) for (const f of values.flag) variants.push({ ...base, arg: v, flag: f, extra: [1] })
    for (const variant of variants) {
      const json = JSON.stringify(variant)
      const fast = Effect.runSync(Effect.either(decodeWorkerJson(json)))
      const slow = decodeWorkerJsonWithSchema(json)
      assert.strictEqual(fast._tag, slow._tag, json)
      if (Either.isRight(fast) && Either.isRight(slow)) {
        assert.deepStrictEqual(
          { ...fast.right, arg: [...fast.right.arg] },
          { ...slow.right, arg: [...slow.right.arg] },
          json
        )
      }
      checked++
    }
    assert.isAbove(checked, 40)
  })

  it.effect("malformed payloads are a typed InvalidJob saying what is wrong", () =>
    Effect.gen(function*() {
      for (
        const bad of [
          "not json",
          "[]",
          "{\"dbid\":1,\"funcname\":\"f\"}",
          "{\"jobid\":\"x1\",\"dbid\":1,\"funcname\":\"f\"}",
          "{\"jobid\":-1,\"dbid\":1,\"funcname\":\"f\"}",
          "{\"jobid\":1,\"dbid\":1,\"funcname\":\"f\",\"flag\":\"weird\"}"
        ]
      ) {
        const err = yield* Effect.flip(decodeWorkerJson(bad))
        assert.strictEqual(err._tag, "InvalidJob")
        assert.include(err.message, "malformed worker JSON")
      }
    }))
})

describe("job validity", () => {
  const reasonOf = (job: Parameters<typeof validateNewJob>[0]) => {
    const v = validateNewJob(job)
    return Either.isLeft(v) ? v.left.message : undefined
  }

  it("the Controller's and the Injector's function names are reserved", () => {
    for (const name of ["run_queued_job", "inject_jobs"]) {
      assert.include(funcnameProblem(name), "reserved")
      assert.include(reasonOf({ funcname: name, runAfter: 0 }), "reserved")
    }
    assert.isUndefined(funcnameProblem("run_queued_job2"))
  })

  it("function names: no control characters, whitespace or unpaired surrogates, anywhere", () => {
    // The forged `status` line of the issue, and every other separator the admin protocol or a packet knows.
    const bad = [
      "evil\t99999\t0\t1\nvictim",
      "a b",
      "a\u0000b",
      "a\r",
      "a\u007f",
      "a\u0085",
      "a\u00a0",
      "a\u2028",
      "a\ufeff",
      "\ud800x",
      " a",
      "a "
    ]
    for (const name of bad) {
      assert.isString(funcnameProblem(name), JSON.stringify(name))
      assert.strictEqual(validateNewJob({ funcname: name, runAfter: 0 }).pipe(Either.getLeft, (o) => o._tag), "Some")
    }
    assert.include(funcnameProblem("evil\t99999"), "U+0009 at index 4")
    for (const name of ["resize", "Image::Resize", "a.b-c/d@e", "café☃", "x\ud83d\ude00"])
      assert.isUndefined(funcnameProblem(name), name)
    assert.strictEqual(funcnameProblem(""), "funcname is missing")
  })

  it("unique keys: NUL and unpaired surrogates are refused, other text is fine", () => {
    assert.include(uniqkeyProblem("a\u0000b"), "NUL at index 1")
    assert.include(uniqkeyProblem("\udc00"), "unpaired surrogate")
    for (const key of ["k", "a b\tc\n", "café ☃"]) assert.isUndefined(uniqkeyProblem(key), key)
    assert.include(reasonOf({ funcname: "f", uniqkey: "a\u0000", runAfter: 0 }), "NUL")
    assert.isUndefined(reasonOf({ funcname: "f", uniqkey: "", runAfter: 0 }), "an empty key is no key")
  })

  it("a rejection quotes a bounded prefix of the bad value", () => {
    const huge = `a\t${"x".repeat(1_000_000)}`
    for (const message of [funcnameProblem(huge)!, uniqkeyProblem(`\u0000${"y".repeat(1_000_000)}`)!]) {
      assert.isBelow(message.length, 250, message.slice(0, 300))
      assert.match(message, /… \(100000[12] UTF-16 units in all\)/)
    }
  })

  it("workerJsonBytes is the byte length of the worker JSON, without building it", () => {
    const base: StoredJob = {
      dbid: 3,
      jobid: 123456,
      funcname: "resize",
      arg: new Uint8Array(0),
      uniqkey: null,
      coalesce: null,
      runAfter: 1_700_000_000,
      flag: "shim",
      failcount: 0
    }
    const every = Uint8Array.from({ length: 512 }, (_, i) => i % 256)
    const jobs: ReadonlyArray<StoredJob> = [
      base,
      { ...base, arg: every, flag: "controller", failcount: 255 },
      { ...base, funcname: "café☃\ud83d\ude00", uniqkey: "q\"\\\u0001\t\u2028", coalesce: "c\ud800" },
      { ...base, dbid: Number.MAX_SAFE_INTEGER, jobid: Number.MAX_SAFE_INTEGER, uniqkey: "", coalesce: "" },
      { ...base, arg: Buffer.from("\u0000".repeat(1000) + "plain ascii \"quoted\" \\ and \u00ff", "latin1") }
    ]
    for (const job of jobs)
      assert.strictEqual(workerJsonBytes(job), Buffer.byteLength(encodeWorkerJson(job)), JSON.stringify(job.funcname))
  })

  it("a job whose worker JSON could not be delivered in one Gearman packet is refused; one that fits is stored", () => {
    // 12 MiB of zero bytes fits the MEDIUMBLOB, but each byte is six in the JSON: about 72 MiB.
    const zeros = new Uint8Array(12 * 1024 * 1024)
    const reason = reasonOf({ funcname: "f", arg: zeros, runAfter: 0 })
    assert.include(reason, "worker JSON")
    assert.include(reason, String(WORKER_JSON_MAX_BYTES))
    // The same size of plain text is 12 MiB of JSON; 10 MiB of zeros is 60 MiB: both fit.
    assert.isUndefined(reasonOf({ funcname: "f", arg: new Uint8Array(12 * 1024 * 1024).fill(97), runAfter: 0 }))
    assert.isUndefined(reasonOf({ funcname: "f", arg: new Uint8Array(10 * 1024 * 1024), runAfter: 0 }))
  })
})

describe("handles and shards", () => {
  it("CRC32 matches the standard check value; the bucket rule is Gearman::Client's", () => {
    assert.strictEqual(crc32("123456789"), 0xcbf43926)
    assert.strictEqual(crc32(""), 0)
    assert.strictEqual(hashBucket("123456789", 7), ((0xcbf43926 >>> 16) & 0x7fff) % 7)
  })

  it("handles parse as dbid:jobid", () => {
    assert.deepStrictEqual(parseHandle("2:15"), Either.right({ dbid: 2, jobid: 15 }))
    for (const bad of ["2", "0:1", "1:0", "a:b", "1:2:3"]) assert.isTrue(Either.isLeft(parseHandle(bad)), bad)
  })

  it("shard URLs: defaults, ids, and the password kept redacted", () => {
    const shard = Either.getOrThrow(parseShardUrl("mysql://app:s%40cret@db1:3307/jobs?id=4", 1))
    assert.deepStrictEqual({ ...shard, password: Redacted.value(shard.password) }, {
      id: 4,
      host: "db1",
      port: 3307,
      database: "jobs",
      user: "app",
      password: "s@cret"
    })
    for (const shown of [String(shard.password), JSON.stringify(shard), String(shard.password.toString())]) {
      assert.notInclude(shown, "s@cret")
    }
    const local = Either.getOrThrow(parseShardUrl("mysql://localhost/jobs", 3))
    assert.deepStrictEqual([local.id, local.port, local.user], [3, 3306, "root"])
  })

  it("bad shard configuration names the field and never echoes a password", () => {
    for (
      const bad of [
        "mysql://u:topsecret@h:1/",
        "postgres://u:topsecret@h/db",
        "u:topsecret@h",
        "mysql://u:topsecret@h/db?id=0",
        "mysql://u:topsecret@h/db?id=0x10",
        "mysql://u:topsecret%zz@h/db",
        "mysql://u%E0%A4:topsecret@h/db",
        "mysql://u:topsecret@h/d%zz",
        "mysql://u:topsecret@h:0/db"
      ]
    ) {
      const result = parseShardUrl(bad, 1)
      assert.isTrue(Either.isLeft(result), bad)
      if (Either.isLeft(result)) {
        assert.include(result.left.message, "invalid configuration db")
        assert.notInclude(result.left.message, "topsecret")
      }
    }
    const dup = shardsFromUrls(["mysql://h/a?id=1", "mysql://h/b?id=1"])
    assert.isTrue(Either.isLeft(dup) && dup.left.message.includes("used twice"))
    assert.isTrue(Either.isLeft(shardsFromUrls([])))
    assert.deepStrictEqual(
      Either.map(shardsFromUrls(["mysql://h/a", "mysql://h/b"]), (s) => s.map((x) => x.id)),
      Either.right([1, 2])
    )
  })
})

describe("the last error as stored", () => {
  it("control characters escaped, tab and newline kept, unpaired surrogates replaced", () => {
    assert.strictEqual(boundedError("a\u0000b\u001bc\td\ne\u007f\ud800"), "a\\u0000b\\u001bc\td\ne\\u007f\ufffd")
    assert.strictEqual(boundedError("short"), "short")
  })

  it("at most LAST_ERROR_MAX_CHARS characters, cut between characters, marked; exactly the bound is kept whole", () => {
    const exact = "x".repeat(LAST_ERROR_MAX_CHARS)
    assert.strictEqual(boundedError(exact), exact)
    const cut = boundedError("😀".repeat(LAST_ERROR_MAX_CHARS + 1))
    assert.strictEqual([...cut].length, LAST_ERROR_MAX_CHARS)
    assert.strictEqual(cut, `${"😀".repeat(LAST_ERROR_MAX_CHARS - 1)}…`)
    // An escape is never cut in half.
    const escapes = boundedError("\u0001".repeat(LAST_ERROR_MAX_CHARS))
    assert.isTrue(escapes.length <= LAST_ERROR_MAX_CHARS && /^(\\u0001)+…$/.test(escapes))
  })
})

describe("job states", () => {
  const at = (runAfter: number, extra: Partial<Parameters<typeof jobState>[0]> = {}) =>
    jobState({ runAfter, failcount: 0, ...extra }, 1000)
  it("ended first, then due, never, dispatched (the lease in run_after), retrying, scheduled", () => {
    assert.strictEqual(at(NEVER, { ended: "dead" }), "dead")
    assert.strictEqual(at(500, { ended: "cancelled" }), "cancelled")
    assert.strictEqual(at(1000), "due")
    assert.strictEqual(at(900, { leasedUntil: 900 }), "due", "a lease that ran out")
    assert.strictEqual(at(NEVER), "never")
    assert.strictEqual(at(2000, { leasedUntil: 2000, failcount: 3 }), "dispatched")
    assert.strictEqual(at(2000, { leasedUntil: 1500, failcount: 3 }), "retrying")
    assert.strictEqual(at(2000, { leasedUntil: null }), "scheduled")
  })
})
