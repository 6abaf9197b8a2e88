// The shapes the SQL drivers send back: each Schema and the guard beside it agree.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { fastJobRow } from "../../src/Job.js"
import {
  ClaimLeaseRow,
  decodeClaimLeases,
  decodeHeader,
  decodeReturned,
  isClaimLeaseRow,
  isResultHeader,
  isReturnedRow,
  jobsFromRows,
  jobsFromRowsWithSchema,
  ResultHeader,
  ReturnedRow
} from "../../src/storage/sql/rows.js"

describe("SQL rows", () => {
  it("job rows: the fast decoder and the JobRow schema agree on every row", () => {
    const values = {
      jobid: [1, 0, 2 ** 53, -1, 1.5, "7", null],
      funcname: ["f", "", 5],
      arg: [Buffer.from("x"), new Uint8Array([0, 255]), null, "x", undefined],
      uniqkey: ["k", "", null, undefined, 1],
      coalesce: ["c", null, undefined],
      run_after: [0, 123, "123", -5, undefined],
      flag: ["shim", "controller", "", null, undefined, "weird"],
      failcount: [0, 4, "4", undefined]
    }
    const keys = Object.keys(values) as Array<keyof typeof values>
    const base = {
      jobid: 1,
      funcname: "f",
      arg: Buffer.from("x"),
      uniqkey: null,
      coalesce: null,
      run_after: 0,
      flag: "shim",
      failcount: 0
    }
    const variants: Array<Record<string, unknown>> = [base]
    for (const k of keys) for (const v of values[k]) variants.push({ ...base, [k]: v })
    for (const v of values.arg) for (const f of values.flag) variants.push({ ...base, arg: v, flag: f, extra: 1 })
    let fastOnes = 0
    for (const variant of variants) {
      const what = JSON.stringify(variant)
      const fast = fastJobRow(3, variant)
      const slow = Effect.runSync(Effect.either(jobsFromRowsWithSchema(3, [variant])))
      if (fast === undefined) continue
      fastOnes++
      assert.isTrue(Either.isRight(slow), what)
      if (Either.isRight(slow))
        assert.deepStrictEqual(
          { ...fast, arg: [...fast.arg] },
          { ...slow.right[0]!, arg: [...slow.right[0]!.arg] },
          what
        )
    }
    assert.isAbove(fastOnes, 10)
    // A batch with one unusual row goes through the schema as a whole, and still decodes.
    const mixed = Effect.runSync(jobsFromRows(3, [base, { ...base, jobid: "7", flag: null }]))
    assert.deepStrictEqual(mixed.map((j) => [j.jobid, j.flag]), [[1, "shim"], [7, "shim"]])
    for (const bad of [{ ...base, flag: "weird" }, { ...base, jobid: -1 }, { ...base, arg: "text" }, "not a row"]) {
      assert.strictEqual(
        Effect.runSync(Effect.flip(jobsFromRows(3, [base, bad])))._tag,
        "ShardRejected",
        JSON.stringify(bad)
      )
    }
  })

  it("a claim's lease columns: the guard and the ClaimLeaseRow schema agree on every row", () => {
    const token = "0123456789abcdef0123456789abcdef"
    const values = {
      lease_token: [token, "", null, undefined, 5],
      heartbeat_at: [null, 0, 1_700_000_000, -1, 1.5, "7", undefined, 2 ** 53]
    }
    const base = { jobid: 1, lease_token: token, heartbeat_at: null }
    const variants: Array<unknown> = [base, "not a row", null]
    for (const k of Object.keys(values) as Array<keyof typeof values>)
      for (const v of values[k]) variants.push({ ...base, [k]: v })
    const decodeWithSchema = Schema.decodeUnknownEither(ClaimLeaseRow)
    let guarded = 0
    for (const variant of variants) {
      const what = JSON.stringify(variant)
      if (!isClaimLeaseRow(variant)) continue
      guarded++
      const slow = decodeWithSchema(variant)
      assert.isTrue(Either.isRight(slow), what)
      if (Either.isRight(slow)) {
        assert.deepStrictEqual(
          slow.right,
          { lease_token: variant.lease_token, heartbeat_at: variant.heartbeat_at },
          what
        )
      }
    }
    assert.isAbove(guarded, 4)
    // A numeric-string heartbeat is not the guard's shape: the schema decodes it; a bad row is refused.
    const decoded = Effect.runSync(decodeClaimLeases([base, { ...base, heartbeat_at: "7" }]))
    assert.deepStrictEqual(decoded.map((r) => r.heartbeat_at), [null, 7])
    assert.strictEqual(
      Effect.runSync(Effect.flip(decodeClaimLeases([base, { ...base, lease_token: 5 }])))._tag,
      "ShardRejected"
    )
  })

  it("RETURNING rows: the guard and the ReturnedRow schema agree on every row", () => {
    const values = {
      jobid: [1, 0, 2 ** 53, -1, 1.5, "7", null],
      funcname: ["f", "", 5, null],
      uniqkey: ["k", "", null, undefined, 1]
    }
    const base = { jobid: 1, funcname: "f", uniqkey: null }
    const variants: Array<unknown> = [base, "not a row", null, { ...base, extra: 1 }]
    for (const k of Object.keys(values) as Array<keyof typeof values>)
      for (const v of values[k]) variants.push({ ...base, [k]: v })
    const decodeWithSchema = Schema.decodeUnknownEither(ReturnedRow)
    let guarded = 0
    for (const variant of variants) {
      const what = JSON.stringify(variant)
      if (!isReturnedRow(variant)) continue
      guarded++
      const slow = decodeWithSchema(variant)
      assert.isTrue(Either.isRight(slow), what)
      if (Either.isRight(slow))
        assert.deepStrictEqual(slow.right, {
          jobid: variant.jobid,
          funcname: variant.funcname,
          uniqkey: variant.uniqkey
        }, what)
    }
    assert.isAbove(guarded, 5)
    // A numeric-string jobid is not the guard's shape: the schema decodes it; a bad row is refused.
    assert.deepStrictEqual(Effect.runSync(decodeReturned([base, { ...base, jobid: "7" }])).map((r) => r.jobid), [1, 7])
    assert.strictEqual(
      Effect.runSync(Effect.flip(decodeReturned([base, { ...base, jobid: -1 }])))._tag,
      "ShardRejected"
    )
  })

  it("result headers: the guard and the ResultHeader schema agree on every header", () => {
    const values = {
      affectedRows: [0, 1, 1000, -1, 1.5, "3", null],
      insertId: [0, 1, 2 ** 53, -1, 1.5, "7", null, undefined]
    }
    const base = { affectedRows: 1, insertId: 5 }
    const variants: Array<unknown> = [base, "not a header", null, [base], { ...base, fieldCount: 0, info: "" }]
    for (const k of Object.keys(values) as Array<keyof typeof values>)
      for (const v of values[k]) variants.push({ ...base, [k]: v })
    const decodeWithSchema = Schema.decodeUnknownEither(ResultHeader)
    let guarded = 0
    for (const variant of variants) {
      const what = JSON.stringify(variant)
      if (!isResultHeader(variant)) continue
      guarded++
      const slow = decodeWithSchema(variant)
      assert.isTrue(Either.isRight(slow), what)
      if (Either.isRight(slow)) {
        assert.strictEqual(slow.right.affectedRows, variant.affectedRows, what)
        assert.strictEqual(slow.right.insertId, variant.insertId, what)
      }
    }
    assert.isAbove(guarded, 5)
    // What the guard leaves goes to the schema: a numeric-string id decodes, a missing one is refused.
    assert.strictEqual(Effect.runSync(decodeHeader({ affectedRows: 1, insertId: "7" })).insertId, 7)
    assert.strictEqual(Effect.runSync(Effect.flip(decodeHeader({ affectedRows: 1 })))._tag, "ShardRejected")
  })
})
