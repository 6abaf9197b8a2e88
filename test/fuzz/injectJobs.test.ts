// Property suite for the `inject_jobs` handler (src/roles/Injector.ts): random bytes, random JSON
// and request-shaped objects with random field values are answered or rejected with a typed
// WorkException, never a defect; a rejected request changes no stored row, an accepted one adds
// only the rows its answer names, and no request changes a row it did not name.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, FastCheck as fc, Layer, Runtime, Schema, TestClock } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import { WorkException } from "../../src/gearman/errors.js"
import { formatHandle, nowSeconds, type StoredJob } from "../../src/Job.js"
import * as Injector from "../../src/roles/Injector.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { checkAsync } from "../support/fuzz.js"
import { adminQuery, testShards } from "../support/mysql.js"
import { quiet } from "../support/logs.js"

const field = fc.oneof(
  fc.constantFrom(
    "f",
    "g",
    "u1",
    "u2",
    "",
    " ",
    "never",
    "+5",
    "-1",
    "1e3",
    "5",
    "99999999999",
    "\u0000",
    "caf\u00e9",
    null,
    0,
    -1,
    1.5,
    5,
    1e9,
    1e300,
    true,
    [],
    {}
  ),
  fc.string({ maxLength: 10 }),
  fc.integer(),
  fc.jsonValue({ maxDepth: 1 })
)
/** Mostly well-typed (so requests get stored too), sometimes anything. */
const mostly = <A>(valid: fc.Arbitrary<A>) => fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: field })
const spec = fc.record(
  {
    funcname: mostly(fc.constantFrom("f", "g", "h")),
    arg: mostly(fc.string({ maxLength: 10 })),
    uniqkey: mostly(fc.oneof(fc.constantFrom("u1", "u2", "u1 "), fc.string({ maxLength: 6 }))),
    unique: field,
    coalesce: mostly(fc.string({ maxLength: 6 })),
    run_after: mostly(fc.oneof(fc.nat({ max: 100 }), fc.constantFrom("never", "5", 1_800_000_000))),
    other: field
  },
  { requiredKeys: [] }
)
const requests = fc.oneof(
  fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? "null")),
  spec.map((s) => Buffer.from(JSON.stringify(s))),
  fc.array(spec, { maxLength: 4 }).map((s) => Buffer.from(JSON.stringify(s))),
  // a valid request with one byte changed
  fc.tuple(spec, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([s, at, b]) => {
    const out = Buffer.from(JSON.stringify({ ...s, funcname: "f" }))
    out[at % out.length] = b
    return out
  })
)

const Answer = Schema.parseJson(Schema.Union(
  Schema.Struct({ dbid: Schema.Number, jobid: Schema.Number, duplicate: Schema.optional(Schema.Boolean) }),
  Schema.Array(Schema.Struct({ dbid: Schema.Number, jobid: Schema.Number, duplicate: Schema.optional(Schema.Boolean) }))
))

type Rows = ReadonlyMap<string, string>
/** Every stored row, by handle. */
type Snapshot = Effect.Effect<Rows, unknown, Storage>

const memorySnapshot: Snapshot = Effect.flatMap(Storage, (s) => s.list({ limit: 10_000 })).pipe(
  Effect.map((jobs: ReadonlyArray<StoredJob>) =>
    new Map(jobs.map((j) => [formatHandle(j), JSON.stringify({ ...j, arg: [...j.arg] })]))
  )
)

/** Runs the property against the handler; `snapshot` reads every row of the table. */
const property = (runs: number, snapshot: Snapshot) =>
  Effect.gen(function*() {
    const T0 = yield* nowSeconds
    const storage = yield* Storage
    // Rows a request may collide with (same function and unique key) but must never change.
    yield* storage.insert([
      { funcname: "f", arg: "kept", uniqkey: "u1", runAfter: T0 },
      { funcname: "g", arg: "kept", uniqkey: "u2", runAfter: T0 + 50, flag: "controller" },
      { funcname: "f", arg: "plain", runAfter: T0 }
    ])
    const handle = yield* Injector.makeHandler()
    const run = Runtime.runPromise(yield* Effect.runtime<Storage | Gearman.Gearman>())
    const seen = { accepted: 0, rejected: 0 }
    yield* Effect.promise(() =>
      checkAsync(
        runs,
        fc.asyncProperty(requests, async (request) => {
          const before = await run(snapshot)
          const exit = await run(Effect.exit(handle(request)))
          const after = await run(snapshot)
          if (Exit.isFailure(exit)) {
            assert.isFalse(Cause.isDie(exit.cause), Cause.pretty(exit.cause))
            const failure = Cause.failureOption(exit.cause)
            assert.isTrue(failure._tag === "Some" && failure.value instanceof WorkException, Cause.pretty(exit.cause))
            assert.deepStrictEqual(after, before, "a rejected request changed the table")
            seen.rejected++
            return
          }
          const answer = Schema.decodeUnknownSync(Answer)(exit.value)
          const named = new Set((Array.isArray(answer) ? answer : [answer]).map((h) => formatHandle(h)))
          for (const [key, row] of before) assert.strictEqual(after.get(key), row, `row ${key} changed`)
          for (const key of after.keys())
            if (!before.has(key))
              assert.isTrue(named.has(key), `row ${key} added but not answered`)
          for (const key of named)
            assert.isTrue(after.has(key), `answered ${key} is not stored`)
          seen.accepted++
        })
      )
    )
    // The inputs reached both sides of the handler, and the table held the colliding rows.
    assert.isAbove(seen.accepted, 0)
    assert.isAbove(seen.rejected, 0)
    assert.isAtLeast((yield* snapshot).size, 3)
  })

describe("fuzz: inject_jobs requests", () => {
  it.scoped("memory layers: typed rejections, and no row changed that the request did not name", () =>
    TestClock.setTime(1_700_000_000_000).pipe(
      Effect.zipRight(property(250, memorySnapshot)),
      Effect.provide(Layer.mergeAll(StorageLayers.layerMemory({ shards: [1, 2] }), Gearman.layerMemory())),
      Effect.provide(quiet)
    ))

  it.scopedLive("MariaDB: a rejected request leaves the table as it was, byte for byte", () =>
    Effect.gen(function*() {
      const shards = yield* testShards(1)
      const table = `\`${shards[0]!.database}\`.job`
      const snapshot: Snapshot = adminQuery(`SELECT * FROM ${table} ORDER BY jobid`).pipe(
        Effect.map(([rows]) =>
          new Map(
            (rows as ReadonlyArray<Record<string, unknown>>).map((
              r
            ) => [`1:${String(r["jobid"])}`, JSON.stringify(r, (_, v) => v?.type === "Buffer" ? v.data : v)])
          )
        )
      )
      yield* property(40, snapshot).pipe(
        Effect.provide(Layer.mergeAll(Layer.orDie(StorageLayers.layer({ shards })), Gearman.layerMemory())),
        Effect.provide(quiet)
      )
    }))
})
