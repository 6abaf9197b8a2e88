// The storage contract against SQLite files, and what only SQLite can show: the file kept across
// reopening, another connection sharing it, WAL, and the missing-driver error.
import { chmodSync, existsSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Fiber, Layer, Option, Schema } from "effect"
import * as Client from "../../src/roles/Client.js"
import * as SqliteShard from "../../src/storage/sql/sqlite.js"
import { layerSqlite, make, Storage } from "../../src/storage/Storage.js"
import { tempDir } from "../support/files.js"
import { storageContract } from "./contract.js"

/** Storage over SQLite files `<dir>/<name>` with dbids 1, 2, ... */
const storageOver = (dir: string, names: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const driver = yield* SqliteShard.loadDriver()
    const backends = yield* Effect.forEach(names, (name, i) => SqliteShard.make(driver, i + 1, join(dir, name)))
    return yield* make(backends)
  })

storageContract(
  "SQLite",
  Effect.gen(function*() {
    const dir = yield* tempDir("garivini-sqlite-")
    return {
      storage: yield* storageOver(dir, ["a.db", "b.db"]),
      // A file in a directory that does not exist cannot be opened: the shard is unreachable.
      degraded: yield* storageOver(dir, ["c.db", "d.db", "missing/e.db"]),
      dead: yield* storageOver(dir, ["missing/f.db", "missing/g.db"])
    }
  }).pipe(Effect.orDie)
)

const sqliteLayer = (filename: string) => Layer.orDie(layerSqlite({ filename }))

/** A connection of its own to the file, as another process would have (closed with the scope). */
const otherConnection = (filename: string) => SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer))

/** The one value of a one-row, one-column query. */
const scalar = (rows: unknown) =>
  Schema.decodeUnknownSync(Schema.Tuple(Schema.Record({ key: Schema.String, value: Schema.Unknown })))(rows)[0]
const single = (rows: unknown) => Object.values(scalar(rows))[0]

describe("SQLite storage", () => {
  it.scopedLive("a new file and its -wal and -shm are created 0600; an existing file keeps the mode its owner set", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-sqlite-")
      const mode = (path: string) => (statSync(path).mode & 0o777).toString(8)
      const filename = join(dir, "private.db")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Effect.provide(
          Client.insertJob({ funcname: "secret", arg: "private" }),
          yield* Layer.build(sqliteLayer(filename))
        )
        // Open: the WAL and its index exist now, beside the file.
        assert.deepStrictEqual([mode(filename), mode(`${filename}-wal`), mode(`${filename}-shm`)], [
          "600",
          "600",
          "600"
        ])
      }))
      const shared = join(dir, "shared.db")
      writeFileSync(shared, "")
      chmodSync(shared, 0o640)
      yield* Effect.scoped(
        Effect.provide(Client.insertJob({ funcname: "shared", arg: "x" }), yield* Layer.build(sqliteLayer(shared)))
      )
      assert.strictEqual(mode(shared), "640")
    }))

  it.scopedLive("a file closed and reopened keeps its jobs, and ids are never reused", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir("garivini-sqlite-"), "keep.db")
      const stored = yield* Effect.scoped(
        Layer.build(sqliteLayer(filename)).pipe(
          Effect.flatMap((ctx) =>
            Effect.gen(function*() {
              const outcomes = yield* Client.insertJobs(
                Array.from({ length: 5 }, (_, i) => ({ funcname: "keep", arg: `job ${i}`, uniqkey: `k${i}` }))
              )
              // The newest job is deleted: its id must not come back.
              yield* Client.completeJob(outcomes[4]!.handle)
              return outcomes
            }).pipe(Effect.provide(ctx))
          )
        )
      )
      // Closed with its layer: the last connection's close checkpoints the WAL into the file and removes it.
      assert.isFalse(existsSync(`${filename}-wal`))
      assert.isTrue(existsSync(filename))
      yield* Effect.gen(function*() {
        const storage = yield* Storage
        const jobs = yield* storage.list({ limit: 100 })
        assert.deepStrictEqual(jobs.map((j) => Buffer.from(j.arg).toString()), ["job 0", "job 1", "job 2", "job 3"])
        assert.deepStrictEqual((yield* Client.insertJob({ funcname: "keep", uniqkey: "k0" })).duplicate, true)
        const next = yield* Client.insertJob({ funcname: "keep" })
        assert.isTrue(next.handle.jobid > stored[4]!.handle.jobid)
      }).pipe(Effect.provide(sqliteLayer(filename)))
    }))

  it.scopedLive("another connection sees committed jobs at once; the file is in WAL mode", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir("garivini-sqlite-"), "shared.db")
      yield* Effect.gen(function*() {
        yield* Client.insertJobs([{ funcname: "seen", arg: "one" }, { funcname: "seen", arg: "two" }])
        const other = yield* otherConnection(filename)
        assert.strictEqual(single(yield* other.unsafe("PRAGMA journal_mode")), "wal")
        assert.strictEqual(single(yield* other.unsafe("SELECT COUNT(*) AS n FROM job WHERE funcname = 'seen'")), 2)
        // A write from the other side (a row as the Perl client writes it: flag NULL) is read by ours.
        yield* other.unsafe("INSERT INTO job (funcname, arg, run_after, flag) VALUES ('perl', ?, 0, NULL)", [
          Buffer.from([0xff, 0])
        ])
        const [claimed] = yield* (yield* Storage).claimDue(1, 10, "1000 seconds").pipe(
          Effect.map((jobs) => jobs.filter((j) => j.funcname === "perl"))
        )
        assert.strictEqual(claimed!.flag, "shim")
        assert.deepStrictEqual([...claimed!.arg], [0xff, 0])
      }).pipe(Effect.provide(sqliteLayer(filename)))
    }))

  it.scopedLive("unique keys compare as in MySQL: trailing spaces do not make another key", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir("garivini-sqlite-"), "pad.db")
      yield* Effect.gen(function*() {
        const first = yield* Client.insertJob({ funcname: "pad", uniqkey: "key" })
        const spaced = yield* Client.insertJob({ funcname: "pad", uniqkey: "key  " })
        assert.deepStrictEqual(spaced, { handle: first.handle, duplicate: true })
        assert.isFalse((yield* Client.insertJob({ funcname: "pad", uniqkey: " key" })).duplicate)
      }).pipe(Effect.provide(sqliteLayer(filename)))
    }))

  /** Storage over a file holding one job, and another connection holding the file's write lock. */
  const lockedByAnother = (busyTimeoutMs: number) =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir("garivini-sqlite-"), "locked.db")
      const driver = yield* SqliteShard.loadDriver()
      const storage = yield* make([yield* SqliteShard.make(driver, 1, filename, { busyTimeoutMs })])
      yield* storage.insert([{ funcname: "busy", runAfter: 0 }])
      const other = yield* otherConnection(filename)
      yield* other.unsafe("BEGIN IMMEDIATE")
      return { storage, other }
    })

  it.scopedLive("a write lock held by another process past busy_timeout: unavailable, nothing stored; then it works", () =>
    Effect.gen(function*() {
      const { other, storage } = yield* lockedByAnother(20)
      const error = yield* Effect.flip(storage.insert([{ funcname: "busy", uniqkey: "blocked", runAfter: 0 }]))
      assert.strictEqual(error._tag, "ShardUnavailable")
      assert.include(error.message, "SQLITE_BUSY")
      assert.strictEqual((yield* Effect.flip(storage.claimDue(1, 10, "1000 seconds")))._tag, "ShardUnavailable")
      yield* other.unsafe("COMMIT")
      assert.isFalse((yield* storage.insert([{ funcname: "busy", uniqkey: "blocked", runAfter: 0 }]))[0]!.duplicate)
      assert.strictEqual((yield* storage.claimDue(1, 10, "1000 seconds")).length, 2)
    }))

  it.scopedLive("a write waiting for another process's lock does not freeze the event loop, and succeeds once it is free", () =>
    Effect.gen(function*() {
      const { other, storage } = yield* lockedByAnother(10_000)
      const waiting = yield* Effect.fork(storage.insert([{ funcname: "wait", uniqkey: "after", runAfter: 0 }]))
      // Timers keep firing while the insert waits: ten of them in turn. SQLite's own busy handler
      // would hold the event loop until it gave up (SQLITE_BUSY), so the insert would be over by then.
      for (let tick = 0; tick < 10; tick++) yield* Effect.sleep("10 millis")
      assert.isNull(waiting.unsafePoll(), "the insert is still waiting for the lock")
      yield* other.unsafe("COMMIT")
      const [stored] = yield* Fiber.join(waiting)
      assert.isFalse(stored!.duplicate)
    }))

  it.scopedLive("a file that cannot be opened fails the layer with ShardUnavailable", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir("garivini-sqlite-"), "no", "such", "dir.db")
      const error = yield* Effect.flip(Layer.build(layerSqlite({ filename })))
      assert.strictEqual(error._tag, "ShardUnavailable")
      assert.include(error.message, "cannot open the SQLite file")
    }))

  it.effect("a missing driver module says how to install it", () =>
    Effect.gen(function*() {
      // A real "module not found" from Node, for a package that does not exist.
      const missing = "@effect/sql-sqlite-node-missing/SqliteClient"
      const error = yield* Effect.flip(SqliteShard.loadDriver(() => import(/* @vite-ignore */ missing)))
      assert.strictEqual(error._tag, "SqliteDriverMissing")
      assert.include(error.message, "npm install @effect/sql-sqlite-node")
      assert.include(error.message, "ERR_MODULE_NOT_FOUND")
    }))

  it.scopedLive("the schema is applied on every open (idempotent), with either synchronous setting", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("garivini-sqlite-")
      const pragma = (filename: string, options: SqliteShard.SqliteShardOptions) =>
        Effect.scoped(Effect.gen(function*() {
          const driver = yield* SqliteShard.loadDriver()
          const backend = yield* SqliteShard.make(driver, 1, filename, options)
          yield* backend.insert([{
            funcname: "s",
            arg: new Uint8Array(0),
            uniqkey: null,
            coalesce: null,
            runAfter: 0,
            flag: "shim"
          }])
          return Option.getOrThrow(yield* backend.get(1))
        }))
      const filename = join(dir, "sync.db")
      assert.strictEqual((yield* pragma(filename, {})).funcname, "s")
      // Opened again: the schema statements are idempotent and the job is still there.
      const again = yield* pragma(filename, { synchronous: "full" })
      assert.strictEqual(again.jobid, 1)
      const other = yield* otherConnection(filename)
      assert.strictEqual(single(yield* other.unsafe("SELECT COUNT(*) AS n FROM job")), 2)
    }))
})
