// What only the MariaDB layer can show: locks, the original's rows, the pool, and faults.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Logger, LogLevel, Option, Redacted, Schema } from "effect"
import * as Mysql from "mysql2/promise"
import type { ShardConfig } from "../../src/storage/targets.js"
import { decodeWorkerJson, encodeWorkerJson } from "../../src/Job.js"
import * as MysqlShard from "../../src/storage/sql/mysql.js"
import { clientConfig, openClient } from "../../src/storage/sql/mysql.js"
import { migrate } from "../../src/storage/migrate.js"
import { make } from "../../src/storage/Storage.js"
import { adminQuery, mysqlHost, mysqlPort, shardConfig, testShards } from "../support/mysql.js"
import { eventually } from "../gearman/gearmand.js"
import { makeProxy } from "../support/proxy.js"

const storageOver = (configs: ReadonlyArray<ShardConfig>) =>
  Effect.flatMap(Effect.forEach(configs, (c) => MysqlShard.make(c)), (backends) => make(backends))

const connect = (database: string) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      Mysql.createConnection({ host: mysqlHost, port: mysqlPort, user: "root", password: "", database })
    ),
    (conn) => Effect.promise(() => conn.end())
  )

const CountRow = Schema.Array(Schema.Struct({ n: Schema.Number }))
const countRows = (database: string) =>
  adminQuery(`SELECT COUNT(*) AS n FROM \`${database}\`.job`).pipe(
    Effect.flatMap(([rows]) => Schema.decodeUnknown(CountRow)(rows)),
    Effect.map((rows) => rows[0]!.n)
  )

describe("MariaDB storage", () => {
  it.scopedLive("a claimer does not wait for rows another transaction holds: it skips them", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const storage = yield* storageOver([shard!])
      yield* storage.insert(
        Array.from({ length: 10 }, (_, i) => ({ funcname: "held", arg: `${i}`, runAfter: 1000 + i }))
      )
      // Another session (a claimer mid-transaction) locks the 4 oldest rows and keeps them.
      const other = yield* connect(shard!.database)
      yield* Effect.promise(() => other.query("BEGIN"))
      yield* Effect.promise(() => other.query("SELECT jobid FROM job ORDER BY run_after LIMIT 4 FOR UPDATE"))
      // Ours completes while those locks are still held (it would hang here if it waited).
      const claimed = yield* storage.claimDue(1, 100, "1000 seconds")
      assert.deepStrictEqual(claimed.map((j) => Buffer.from(j.arg).toString()), ["4", "5", "6", "7", "8", "9"])
      yield* Effect.promise(() => other.query("ROLLBACK"))
      const rest = yield* storage.claimDue(1, 100, "1000 seconds")
      assert.deepStrictEqual(rest.map((j) => Buffer.from(j.arg).toString()), ["0", "1", "2", "3"])
    }))

  it.scopedLive("rows written the way the Perl client writes them are read and dispatched alike", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const storage = yield* storageOver([shard!])
      const conn = yield* connect(shard!.database)
      // Garivini::Client::insert_job: flag bound as undef (NULL), run_after 0, no failcount column.
      yield* Effect.promise(() =>
        conn.query(
          "INSERT IGNORE INTO job (funcname, run_after, uniqkey, coalesce, arg, flag) VALUES (?, ?, ?, ?, ?, ?)",
          ["foo", 0, null, null, Buffer.from([0x68, 0x69, 0xff, 0x00]), null]
        )
      )
      const [job] = yield* storage.claimDue(1, 10, "1000 seconds")
      assert.strictEqual(job!.flag, "shim")
      assert.strictEqual(job!.failcount, 0)
      const json = JSON.parse(encodeWorkerJson(job!))
      assert.deepStrictEqual(Object.keys(json), [
        "jobid",
        "dbid",
        "funcname",
        "arg",
        "uniqkey",
        "coalesce",
        "run_after",
        "flag",
        "failcount",
        // Ours (migration 4): the lease token, an extra key that Perl workers ignore.
        "lease"
      ])
      assert.match(json.lease, /^[0-9a-f]{32}$/)
      assert.strictEqual(json.arg, "hi\u00ff\u0000")
      assert.deepStrictEqual([...(yield* decodeWorkerJson(encodeWorkerJson(job!))).arg], [0x68, 0x69, 0xff, 0x00])
      // And what the Perl worker does to complete it works on our rows.
      const [ours] = yield* storage.insert([{ funcname: "foo", runAfter: 0 }])
      yield* Effect.promise(() => conn.query("DELETE FROM job WHERE jobid=?", [ours!.handle.jobid]))
      assert.isTrue(Option.isNone(yield* storage.get(ours!.handle)))
    }))

  it.scopedLive("the migrations make the original's job table plus migrations 2's and 4's nullable columns, 5's priority and indexes, and migrate is idempotent", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const storage = yield* storageOver([shard!])
      yield* storage.insert([{ funcname: "keep", runAfter: 0 }])
      yield* migrate([shard!])
      yield* migrate([shard!])
      assert.strictEqual(yield* countRows(shard!.database), 1)
      const [columns] = yield* adminQuery(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'job' ORDER BY ORDINAL_POSITION",
        [shard!.database]
      )
      assert.deepStrictEqual(
        JSON.parse(JSON.stringify(columns)),
        [
          { COLUMN_NAME: "jobid", COLUMN_TYPE: "bigint(20) unsigned", IS_NULLABLE: "NO" },
          { COLUMN_NAME: "funcname", COLUMN_TYPE: "varchar(200)", IS_NULLABLE: "NO" },
          { COLUMN_NAME: "arg", COLUMN_TYPE: "mediumblob", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "uniqkey", COLUMN_TYPE: "varchar(255)", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "run_after", COLUMN_TYPE: "int(10) unsigned", IS_NULLABLE: "NO" },
          { COLUMN_NAME: "coalesce", COLUMN_TYPE: "varchar(255)", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "flag", COLUMN_TYPE: "enum('controller','shim')", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "failcount", COLUMN_TYPE: "tinyint(3) unsigned", IS_NULLABLE: "NO" },
          // Migration 2: nullable only (Perl's statements never name them).
          { COLUMN_NAME: "last_error", COLUMN_TYPE: "text", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "last_error_at", COLUMN_TYPE: "int(10) unsigned", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "last_error_attempt", COLUMN_TYPE: "tinyint(3) unsigned", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "ended", COLUMN_TYPE: "enum('dead','cancelled')", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "ended_at", COLUMN_TYPE: "int(10) unsigned", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "leased_until", COLUMN_TYPE: "int(10) unsigned", IS_NULLABLE: "YES" },
          // Migration 4: nullable too.
          { COLUMN_NAME: "lease_token", COLUMN_TYPE: "char(32)", IS_NULLABLE: "YES" },
          { COLUMN_NAME: "heartbeat_at", COLUMN_TYPE: "int(10) unsigned", IS_NULLABLE: "YES" },
          // Migration 5: defaulted (a Perl insert naming its columns gets normal, 0).
          { COLUMN_NAME: "priority", COLUMN_TYPE: "tinyint(4)", IS_NULLABLE: "NO" },
          // Migration 7: nullable.
          { COLUMN_NAME: "traceparent", COLUMN_TYPE: "varchar(55)", IS_NULLABLE: "YES" }
        ]
      )
      const [indexes] = yield* adminQuery(
        "SELECT INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS cols FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'job' GROUP BY INDEX_NAME, NON_UNIQUE ORDER BY INDEX_NAME",
        [shard!.database]
      )
      assert.deepStrictEqual(
        JSON.parse(JSON.stringify(indexes)).map((
          r: { cols: string; NON_UNIQUE: number }
        ) => [r.cols, Number(r.NON_UNIQUE)]),
        [["funcname,uniqkey", 0], ["priority,run_after", 1], ["funcname,leased_until", 1], ["jobid", 0], [
          "run_after",
          1
        ]]
      )
    }))

  it.scopedLive("a large batch is chunked into one transaction; every job gets its own handle", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const storage = yield* storageOver([shard!])
      const jobs = Array.from({ length: 2500 }, (_, i) => ({
        funcname: "bulk",
        arg: `${i}`,
        uniqkey: i === 1700 ? "dup" : i === 2400 ? "dup" : null,
        runAfter: 0
      }))
      const outcomes = yield* storage.insert(jobs)
      assert.strictEqual(outcomes.length, 2500)
      assert.deepStrictEqual(outcomes[2400], { handle: outcomes[1700]!.handle, duplicate: true })
      assert.strictEqual(new Set(outcomes.map((o) => o.handle.jobid)).size, 2499)
      assert.strictEqual(yield* countRows(shard!.database), 2499)
      for (const i of [0, 999, 1000, 2499]) {
        const job = Option.getOrThrow(yield* storage.get(outcomes[i]!.handle))
        assert.strictEqual(Buffer.from(job.arg).toString(), `${i}`)
      }
    }))

  it.scopedLive("settling leased rows by (jobid, token) reads them by primary key, one row or many, never the table", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const db = shard!.database
      // Enough rows that a scan is the optimizer's last resort, each under a token as claimed.
      yield* adminQuery(
        `INSERT INTO \`${db}\`.job (funcname, arg, lease_token) SELECT 'f', 'x', CONCAT('t', seq) FROM \`${db}\`.seq_1_to_3000`
      )
      yield* adminQuery(`ANALYZE TABLE \`${db}\`.job`)
      const dialect = MysqlShard.dialect(shard!)
      const Plan = Schema.Array(Schema.Struct({ type: Schema.String, key: Schema.NullOr(Schema.String) }))
      const plan = (statement: string, params: ReadonlyArray<unknown>) =>
        adminQuery(`EXPLAIN ${statement}`, params).pipe(
          Effect.flatMap(([rows]) => Schema.decodeUnknown(Plan)(rows)),
          Effect.orDie
        )
      const pairs = (n: number) => Array.from({ length: n }, (_, i) => [3000 - i, `t${3000 - i}`] as const)
      for (const n of [1, 2, 3, 17]) {
        const held = dialect.tokenedIn(pairs(n))
        const plainOne = dialect.inList([5])
        for (
          const [what, statement, params] of [
            ["DELETE", `DELETE FROM \`${db}\`.job WHERE ${held.sql}`, held.params],
            ["UPDATE", `UPDATE \`${db}\`.job SET leased_until = 1 WHERE ${held.sql}`, held.params],
            [
              "DELETE mixed with a Perl-dispatched row",
              `DELETE FROM \`${db}\`.job WHERE (jobid IN ${plainOne.sql} OR ${held.sql})`,
              [...plainOne.params, ...held.params]
            ]
          ] as const
        ) {
          const [row] = yield* plan(statement, params)
          assert.notStrictEqual(row!.type, "ALL", `${what} of ${n} pair(s) scans the table`)
          assert.notStrictEqual(row!.type, "index", `${what} of ${n} pair(s) reads the whole index`)
          assert.strictEqual(row!.key, "PRIMARY", `${what} of ${n} pair(s)`)
        }
      }
    }))

  it.scopedLive("an arg the server cannot take in one packet is refused up front (max_allowed_packet taken as 1 MiB)", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      // Whatever the server's own limit, the shard takes it to be 1 MiB: 1 MiB - 64 KiB of arg fits.
      const limit = 1024 * 1024 - 64 * 1024
      const storage = yield* make([
        yield* MysqlShard.make(shard!, { insertMode: "returning", maxAllowedPacket: 1024 * 1024 })
      ])
      // Printable bytes: zero bytes this many would be refused first, for their worker JSON's size.
      const refused = yield* Effect.flip(
        storage.insert([{ funcname: "big", arg: new Uint8Array(limit + 1).fill(97), runAfter: 0 }])
      )
      assert.strictEqual(refused._tag, "InvalidJob")
      assert.include(refused.message, "max_allowed_packet")
      assert.strictEqual(yield* countRows(shard!.database), 0)
      const [stored] = yield* storage.insert([{ funcname: "big", arg: new Uint8Array(limit).fill(97), runAfter: 0 }])
      assert.strictEqual(Option.getOrThrow(yield* storage.get(stored!.handle)).arg.length, limit)
      // Statements mode sends args as hex: half as much fits.
      const halved = yield* make([
        yield* MysqlShard.make(shard!, { insertMode: "statements", maxAllowedPacket: 1024 * 1024 })
      ])
      const hex = yield* Effect.flip(
        halved.insert([{ funcname: "big", arg: new Uint8Array(limit / 2 + 1).fill(97), runAfter: 0 }])
      )
      assert.strictEqual(hex._tag, "InvalidJob")
      assert.strictEqual(
        (yield* halved.insert([{ funcname: "big", arg: new Uint8Array(limit / 2).fill(97), runAfter: 0 }])).length,
        1
      )
    }))

  it.scopedLive("this server's capabilities are detected: SKIP LOCKED, RETURNING, its max_allowed_packet", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const [rows] = yield* adminQuery("SELECT VERSION() AS v, @@max_allowed_packet AS p")
      const server = JSON.parse(JSON.stringify(rows))[0] as { v: string; p: number | string }
      // The test server is MariaDB >= 10.6 (the CI's and this machine's): both features are there.
      const [major, minor] = server.v.split(/[.-]/).map(Number)
      assert.isTrue(server.v.includes("MariaDB") && (major! > 10 || major === 10 && minor! >= 6), server.v)
      const lines: Array<string> = []
      const backend = yield* MysqlShard.make(shard!)
      // The pool opens on first use, and logs what it detected.
      const maxArg = yield* backend.maxArgBytes.pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.map(Logger.logfmtLogger, (l) => void lines.push(l))))
      )
      assert.strictEqual(maxArg, Number(server.p) - 64 * 1024)
      assert.isTrue(lines.some((l) => l.includes("SKIP LOCKED on, inserts via RETURNING")), lines.join("\n"))
    }))

  it.scopedLive("without SKIP LOCKED a claimer waits for another's locks, then takes only the rest: each job once", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const lines: Array<string> = []
      const storage = yield* make([yield* MysqlShard.make(shard!, { skipLocked: false })])
      yield* storage.insert(
        Array.from({ length: 40 }, (_, i) => ({ funcname: "race", arg: `${i}`, runAfter: 1000 + i }))
      ).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.map(Logger.logfmtLogger, (l) => void lines.push(l))))
      )
      assert.isTrue(lines.some((l) => l.includes("SKIP LOCKED off")), lines.join("\n"))
      // Another claimer, mid-transaction, has locked the 25 oldest rows.
      const other = yield* connect(shard!.database)
      yield* Effect.promise(() => other.query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"))
      yield* Effect.promise(() => other.query("BEGIN"))
      yield* Effect.promise(() => other.query("SELECT jobid FROM job ORDER BY run_after, jobid LIMIT 25 FOR UPDATE"))
      const ours = yield* Effect.fork(storage.claimDue(1, 25, "1000 seconds"))
      // Ours waits on those locks (with SKIP LOCKED it would pass them by; without FOR UPDATE, read them).
      yield* eventually(
        adminQuery(
          "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND INFO LIKE 'SELECT %FOR UPDATE'",
          [shard!.database]
        ).pipe(Effect.map(([r]) => Number(JSON.parse(JSON.stringify(r))[0].n) > 0)),
        "our claim's SELECT ... FOR UPDATE to be waiting at the server"
      )
      // The other leases its 25 and commits: ours then takes the 15 left, none of the other's.
      yield* Effect.promise(() => other.query("UPDATE job SET run_after = 4000000000 WHERE run_after < 1025"))
      yield* Effect.promise(() => other.query("COMMIT"))
      const claimed = yield* Fiber.join(ours)
      assert.deepStrictEqual(
        claimed.map((j) => Buffer.from(j.arg).toString()),
        Array.from({ length: 15 }, (_, i) => `${25 + i}`)
      )
    }))

  it.scopedLive("the pool keeps idle connections (maxIdle set) instead of reopening them every second", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const client = yield* openClient(clientConfig(shard!, shard!.database), yield* Effect.scope)
      const IdRow = Schema.Array(Schema.Struct({ id: Schema.Number }))
      const connectionId = Effect.scoped(
        Effect.flatMap(
          client.reserve,
          (conn) =>
            Effect.flatMap(
              conn.executeUnprepared("SELECT CONNECTION_ID() AS id", [], undefined),
              Schema.decodeUnknown(IdRow)
            )
        )
      ).pipe(Effect.map((rows) => rows[0]!.id))
      const before = yield* connectionId
      // mysql2 sweeps idle connections every second; without maxIdle it would close this one.
      yield* Effect.sleep("2500 millis")
      assert.strictEqual(yield* connectionId, before)
    }))
})

describe("MariaDB storage faults", () => {
  it.scopedLive("an insert whose answer is lost is reported as unknown and never moved to another shard", () =>
    Effect.gen(function*() {
      const [one, two] = yield* testShards(2)
      const proxy = yield* makeProxy({ host: mysqlHost, port: mysqlPort })
      const storage = yield* storageOver([{ ...one!, port: proxy.port }, two!])
      let stored = 0
      for (let attempt = 0; attempt < 40; attempt++) {
        // The marker travels only in the statement's EXECUTE packet (the prepare holds no values).
        const marker = `cut-me-${attempt}`
        yield* proxy.cutAfterAnswer(marker)
        const result = yield* Effect.either(storage.insert([{ funcname: "lost", arg: marker, runAfter: 0 }]))
        if (result._tag === "Right") {
          stored++
          continue
        }
        assert.strictEqual(result.left._tag, "InsertOutcomeUnknown")
        assert.include(result.left.message, "shard 1")
        // The server did commit it: the caller was right not to assume either way...
        assert.strictEqual(yield* countRows(one!.database), 1)
        // ...and it was not retried on shard 2, which holds only the jobs reported stored.
        assert.strictEqual(yield* countRows(two!.database), stored)
        // Shard 1 is now avoided: the next jobs go to shard 2.
        const [next] = yield* storage.insert([{ funcname: "lost", runAfter: 0 }])
        assert.strictEqual(next!.handle.dbid, 2)
        return
      }
      assert.fail("shard 1 was never picked in 40 inserts")
    }))

  it.scopedLive("a duplicate lookup refused after the insert committed is InsertOutcomeUnknown, never StorageError", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      yield* (yield* storageOver([shard!])).insert([{ funcname: "f", uniqkey: "old", runAfter: 0 }])
      // A user that may insert but not read: its INSERT IGNORE commits, then its lookup is refused.
      const user = `garivini_insert_only_${process.pid}`
      yield* Effect.acquireRelease(
        Effect.zipRight(
          adminQuery(`CREATE USER '${user}'@'%' IDENTIFIED BY 'pw'`),
          adminQuery(`GRANT INSERT ON \`${shard!.database}\`.job TO '${user}'@'%'`)
        ),
        () => adminQuery(`DROP USER IF EXISTS '${user}'@'%'`)
      )
      const backend = yield* MysqlShard.make({ ...shard!, user, password: Redacted.make("pw") }, {
        insertMode: "statements"
      })
      const limited = yield* make([backend])
      const error = yield* Effect.flip(limited.insert([
        { funcname: "f", uniqkey: "old", runAfter: 0 },
        { funcname: "f", uniqkey: "new", runAfter: 0 }
      ]))
      assert.strictEqual(error._tag, "InsertOutcomeUnknown", error.message)
      assert.include(error.message, "jobs were stored, then looking up the duplicates' jobs failed")
      assert.strictEqual(yield* countRows(shard!.database), 2, "the new job was stored")
    }))

  it.scopedLive("a shard down at start is reached once it comes up; a restart's dead connections heal", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const proxy = yield* makeProxy({ host: mysqlHost, port: mysqlPort })
      yield* proxy.stop
      const storage = yield* storageOver([{ ...shard!, port: proxy.port }])
      const down = yield* Effect.flip(storage.insert([{ funcname: "late", runAfter: 0 }]))
      assert.strictEqual(down._tag, "StorageUnavailable")
      yield* proxy.start
      const [stored] = yield* storage.insert([{ funcname: "late", runAfter: 0 }])
      assert.strictEqual(stored!.handle.dbid, 1)
      // Every pooled connection dies (a server restart). The next claims reconnect: the
      // original's QueueRunner kept its dead handle and claimed nothing ever again.
      yield* proxy.cutAll
      const first = yield* Effect.either(storage.claimDue(1, 10, "1000 seconds"))
      const claimed = first._tag === "Right" ? first.right : yield* storage.claimDue(1, 10, "1000 seconds")
      assert.strictEqual(claimed.length, 1)
    }))

  it.scopedLive("no password reaches an error or a log line", () =>
    Effect.gen(function*() {
      const secret = "pw-Zq81!"
      const [shard] = yield* testShards(1)
      // A user that has this password: its shard connects (and logs so), the same user with a
      // wrong database fails (and logs that).
      const user = `garivini_secret_${process.pid}`
      yield* Effect.acquireRelease(
        Effect.zipRight(
          adminQuery(`CREATE USER '${user}'@'%' IDENTIFIED BY '${secret}'`),
          adminQuery(`GRANT ALL ON \`${shard!.database}\`.* TO '${user}'@'%'`)
        ),
        () => adminQuery(`DROP USER IF EXISTS '${user}'@'%'`)
      )
      const lines: Array<string> = []
      const collecting = Logger.map(Logger.logfmtLogger, (line) => void lines.push(line))
      const errors = yield* Effect.gen(function*() {
        const good = yield* storageOver([{ ...shard!, user, password: Redacted.make(secret) }])
        yield* good.insert([{ funcname: "f", runAfter: 0 }])
        yield* good.claimDue(1, 10, "1000 seconds")
        const bad = yield* storageOver([{
          ...shardConfig(1, "garivini_nowhere"),
          user,
          password: Redacted.make(secret)
        }])
        const refused = yield* Effect.flip(bad.insert([{ funcname: "f", runAfter: 0 }]))
        const unknownUser = yield* storageOver([{
          ...shardConfig(1, shard!.database),
          user: "nobody",
          password: Redacted.make(secret)
        }])
        const denied = yield* Effect.flip(unknownUser.claimDue(1, 10, "1000 seconds"))
        return [refused, denied]
      }).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, collecting)),
        Logger.withMinimumLogLevel(LogLevel.Debug)
      )
      // The logger did see both paths: the connection and the failures.
      assert.isTrue(lines.some((l) => l.includes("connected: ")), lines.join("\n"))
      assert.isTrue(lines.some((l) => l.includes("shard avoided")), lines.join("\n"))
      assert.deepStrictEqual(errors.map((e) => e._tag), ["StorageUnavailable", "ShardUnavailable"])
      for (const line of lines) assert.notInclude(line, secret)
      for (const e of errors) {
        for (const text of [e.message, JSON.stringify(e), String(e), Cause.pretty(Cause.fail(e))])
          assert.notInclude(text, secret)
      }
    }))

  it.scopedLive("a claim interrupted mid-transaction finishes it: its leases commit and its connection is clean", () =>
    Effect.gen(function*() {
      const [shard] = yield* testShards(1)
      const proxy = yield* makeProxy({ host: mysqlHost, port: mysqlPort })
      const storage = yield* storageOver([{ ...shard!, port: proxy.port, maxConnections: 1 }])
      yield* storage.insert(Array.from({ length: 20 }, () => ({ funcname: "i", runAfter: 0 })))
      // The claim's SELECT ... FOR UPDATE is held at the proxy: its transaction has begun.
      const hold = yield* proxy.holdRequest("FOR UPDATE")
      const fiber = yield* Effect.fork(storage.claimDue(1, 5, "1000 seconds"))
      yield* hold.held
      // Interrupted there (the signal is delivered now; the fiber acts on it when it may).
      yield* fiber.interruptAsFork(yield* Effect.fiberId)
      yield* hold.release
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isInterrupted(exit), String(exit))
      // The transaction ran to its COMMIT: those 5 stay leased, and the only connection, reused,
      // is not mid-transaction (else the next claim's leases would never commit).
      const next = yield* storage.claimDue(1, 100, "1000 seconds")
      assert.strictEqual(next.length, 15)
      const other = yield* connect(shard!.database)
      const [rows] = yield* Effect.promise(() => other.query("SELECT COUNT(*) AS n FROM job WHERE run_after > 1000"))
      assert.strictEqual(Number(JSON.parse(JSON.stringify(rows))[0].n), 20)
    }))
})
