// Job rows from the SQL backends: the checked fast decoder and the Schema decoder agree on every
// row, and what the fast one refuses still decodes (or is refused) by Schema.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { jobsFromRows, jobsFromRowsWithSchema } from "../../src/storage/sql.js"

const row = (over: Record<string, unknown> = {}) => ({
  jobid: 7,
  funcname: "resize",
  arg: Buffer.from("a.png"),
  uniqkey: null,
  coalesce: null,
  run_after: 1_700_000_000,
  flag: "shim",
  failcount: 0,
  ...over
})

const rows: ReadonlyArray<Record<string, unknown>> = [
  row(),
  row({ arg: null, uniqkey: "u", coalesce: "c", flag: "controller", failcount: 3 }),
  row({ flag: null }),
  row({ flag: "" }),
  row({ arg: new Uint8Array([0, 255]) }),
  // Shapes only the Schema decoder takes: numbers as strings (other drivers), an unknown flag.
  row({ jobid: "8", run_after: "1700000001" }),
  row({ failcount: "2" })
]

describe("job rows", () => {
  it.effect("the fast decoder and Schema give the same jobs, row by row and for a whole batch", () =>
    Effect.gen(function*() {
      for (const r of rows) {
        assert.deepStrictEqual(yield* jobsFromRows(3, [r]), yield* jobsFromRowsWithSchema(3, [r]), JSON.stringify(r))
      }
      assert.deepStrictEqual(yield* jobsFromRows(3, rows), yield* jobsFromRowsWithSchema(3, rows))
    }))

  it.effect("a row neither accepts is a typed rejection", () =>
    Effect.gen(function*() {
      for (const bad of [row({ flag: "weird" }), row({ jobid: -1 }), row({ funcname: 5 }), row({ arg: "text" }), "not a row"]) {
        const fast = yield* Effect.either(jobsFromRows(3, [row(), bad]))
        assert.isTrue(Either.isLeft(fast), JSON.stringify(bad))
        if (Either.isLeft(fast)) assert.strictEqual(fast.left._tag, "ShardRejected")
      }
    }))
})
