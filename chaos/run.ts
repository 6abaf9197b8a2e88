// `npm run chaos -- [--minutes N | --seconds N] [--seed S] [--json FILE] [--lease S] [--workers N]`
//
// A chaos soak over a real multi-server deployment on 127.0.0.1 (issue 19): two MariaDB shards
// (the system server with a scratch database named after the run, and a second `mariadbd` on a
// data directory of its own), two gearmand, two `garivini queue-runner`, a `garivini injector` and
// a `garivini controller`, worker processes on the worker helper (chaos/worker.ts) and a Perl
// Gearman::Worker when Perl has one; a TCP proxy in front of each shard and job server. A steady
// mixed load (chaos/load.ts) runs while seeded faults (chaos/faults.ts) kill, freeze, cut, stall
// and stop its parts. Then, everything healthy again, it waits (bounded) for the queue to drain
// and checks from the handlers' ledger (chaos/ledger.ts) that no accepted job was lost, prints
// the table (chaos/report.ts), writes it as JSON with --json, and exits 1 when a job was lost,
// a unique job ran twice with no fault to explain it, a row was left or a process outlived the run.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Duration, Effect, Either, Fiber, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { ensureBuilt, bundle, garivini, perlGearman, root, spawnProcess } from "../bench/processes.js"
import { shardsFromUrls } from "../src/storage/targets.js"
import type { ShardConfig } from "../src/storage/targets.js"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Client from "../src/roles/Client.js"
import { freePort } from "../src/testing/gearmandProcess.js"
import * as StorageLayers from "../src/storage/Storage.js"
import type { Fault } from "./faults.js"
import { injectFaults, random } from "./faults.js"
import { encodeArg, readLedger } from "./ledger.js"
import { FUNCTION, makeBook, PERL_FUNCTION, runLoad } from "./load.js"
import { analyse, formatReport } from "./report.js"
import type { Report } from "./report.js"
import type { Member, NamedProxy } from "./topology.js"
import {
  ChaosError,
  deleteRow,
  gearmand,
  isAlive,
  member,
  processesOfRun,
  procLaunch,
  proxy,
  rowsLeft,
  rowsOf,
  scratchShard,
  secondMariadb,
  startedPids
} from "./topology.js"

interface Options {
  readonly seconds: number
  readonly seed: number
  readonly json: string | undefined
  readonly lease: number
  readonly workers: number
  readonly drainSeconds: number
  /** Self-test: lose three accepted jobs on purpose (their rows deleted); the run must report them lost and fail. */
  readonly sabotage: boolean
  /** Fault loops running at once (1: one fault at a time). */
  readonly overlap: number
  /** Add the full-disk fault (the second MariaDB's tmpfs filled for a while). */
  readonly diskFull: boolean
}

const parseOptions = (argv: ReadonlyArray<string>): Either.Either<Options, ChaosError> => {
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        minutes: { type: "string" },
        seconds: { type: "string" },
        seed: { type: "string" },
        json: { type: "string" },
        lease: { type: "string" },
        workers: { type: "string" },
        drain: { type: "string" },
        sabotage: { type: "boolean" },
        overlap: { type: "string" },
        "disk-full": { type: "boolean" }
      },
      strict: true
    })
    const num = (name: string, text: string | undefined, fallback: number) => {
      if (text === undefined) return fallback
      const n = Number(text)
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} ${text}: not a non-negative number`)
      return n
    }
    const seconds = values.seconds !== undefined
      ? num("seconds", values.seconds, 60)
      : num("minutes", values.minutes, 1) * 60
    const lease = num("lease", values.lease, 10)
    return Either.right({
      seconds,
      seed: Math.floor(num("seed", values.seed, Date.now() % 1_000_000)),
      json: values.json,
      lease,
      workers: Math.max(1, Math.floor(num("workers", values.workers, 3))),
      drainSeconds: num("drain", values.drain, lease * 3 + 30),
      sabotage: values.sabotage === true,
      overlap: Math.max(1, Math.floor(num("overlap", values.overlap, 1))),
      diskFull: values["disk-full"] === true
    })
  } catch (e) {
    return Either.left(
      new ChaosError({
        message: `${
          e instanceof Error ? e.message : String(e)
        }\nusage: npm run chaos -- [--minutes N | --seconds N] [--seed S] [--json FILE] [--lease S] [--workers N] [--drain S] [--overlap N] [--disk-full] [--sabotage]`,
        cause: e
      })
    )
  }
}

const say = (line: string) => Console.log(`· ${line}`)

const shardUrl = (shard: ShardConfig, port: number) =>
  `mysql://${shard.user}${
    Redacted.value(shard.password) === "" ? "" : ":***"
  }@127.0.0.1:${port}/${shard.database}?id=${shard.id}`

const soak = (o: Options, runId: string, logDir: string, startedAt: number) =>
  Effect.gen(function*() {
    const logTo = (name: string) => join(logDir, `${name.replace(/[^a-z0-9]+/gi, "-")}.log`)
    yield* ensureBuilt.pipe(Effect.mapError((e) => new ChaosError({ message: e.message, cause: e })))
    const marker = { CHAOS_RUN: runId }
    const ledgerDir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "garivini-chaos-ledger-"))),
      (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
    )

    // Servers: the second MariaDB, the scratch databases, two gearmand, a proxy before each.
    const port2 = yield* freePort
    yield* say(`starting a second MariaDB on port ${port2}`)
    const { disk, server: mariadb2 } = yield* secondMariadb(port2, marker, logTo("mariadb 2"))
    if (o.diskFull && disk === undefined) yield* say("cannot mount a tmpfs here: no full-disk fault")
    const shard1 = yield* scratchShard(1, 3306, `garivini_chaos_${runId}`, true)
    const shard2 = yield* scratchShard(2, port2, "garivini_chaos", false)
    const gearmands: Array<Member> = []
    const gearmandPorts: Array<number> = []
    for (const i of [1, 2]) {
      const port = yield* freePort
      gearmandPorts.push(port)
      gearmands.push(yield* gearmand(`gearmand ${i}`, port))
    }
    const shardProxies: Array<NamedProxy> = [yield* proxy("shard 1 proxy", 3306), yield* proxy("shard 2 proxy", port2)]
    const gearmanProxies: Array<NamedProxy> = yield* Effect.forEach(gearmandPorts, (p, i) =>
      proxy(`gearmand ${i + 1} proxy`, p))
    const allShards = [shard1, shard2]
    const allShardsById = new Map(allShards.map((s) => [s.id, s]))
    const dbUrls = [shardUrl(shard1, shardProxies[0]!.proxy.port), shardUrl(shard2, shardProxies[1]!.proxy.port)]
    const servers = gearmanProxies.map((p) =>
      p.address
    )

    // Roles, through the garivini command.
    const roleArgs = [
      ...dbUrls.flatMap((u) => ["--db", u]),
      ...servers.flatMap((s) => ["--gearmand", s]),
      "--log-format",
      "logfmt",
      "--lease",
      String(o.lease)
    ]
    // Each role command takes only its own flags.
    const ownArgs: Record<string, ReadonlyArray<string>> = {
      "queue-runner": ["--batch-run-sleep", "0.5"],
      injector: [],
      // A Controller wait bounded near the lease: a worker frozen by a fault fails its job within seconds.
      controller: ["--controller-timeout", String(Math.max(1, o.lease - 2))]
    }
    const role = (name: string, command: string) =>
      member(
        name,
        command as Member["kind"],
        procLaunch(
          garivini(name, [command, ...roleArgs, ...(ownArgs[command] ?? [])], { env: marker, logTo: logTo(name) }),
          `running ${command} on`
        )
      )
    yield* say(`starting the roles and ${o.workers} worker processes (lease ${o.lease} s)`)
    const roles = yield* Effect.all([
      role("queue-runner 1", "queue-runner"),
      role("queue-runner 2", "queue-runner"),
      role("injector", "injector"),
      role("controller", "controller")
    ], { concurrency: "unbounded" })

    // Workers: the worker helper in processes of their own, and one Perl worker when possible.
    const script = yield* bundle("../chaos/worker.ts").pipe(
      Effect.mapError((e) => new ChaosError({ message: e.message, cause: e }))
    )
    const workers = yield* Effect.forEach(
      Array.from({ length: o.workers }, (_, i) => i + 1),
      (i) =>
        member(
          `worker ${i}`,
          "worker",
          procLaunch(
            spawnProcess(`worker ${i}`, process.execPath, [script], {
              logTo: logTo(`worker ${i}`),
              env: {
                ...marker,
                CHAOS_GEARMAND: servers.join(","),
                CHAOS_DB: dbUrls.join(","),
                CHAOS_FUNCTION: FUNCTION,
                CHAOS_LEDGER: join(ledgerDir, `worker-${i}.ledger`),
                CHAOS_NAME: `worker ${i}`,
                CHAOS_CONCURRENCY: "8"
              }
            }),
            `"event":"ready"`
          )
        ),
      { concurrency: "unbounded" }
    )
    // The Driver, with a durable job in 2–4 children (each with its own ledger file).
    const driverModule = yield* bundle("../chaos/driverWorker.ts").pipe(
      Effect.mapError((e) => new ChaosError({ message: e.message, cause: e }))
    )
    const driver = yield* member(
      "driver",
      "driver",
      procLaunch(
        garivini("garivini driver", [
          "driver",
          "--module",
          driverModule,
          "--server",
          servers.join(","),
          "--console-port",
          "0",
          "--interval",
          "1"
        ], {
          env: { ...marker, GARIVINI_DB: dbUrls.join(","), CHAOS_LEDGER_DIR: ledgerDir },
          logTo: logTo("driver")
        }),
        "driver running"
      )
    )
    const perl = perlGearman()
    const perlWorkers = perl
      ? [
        yield* member(
          "perl worker",
          "perl-worker",
          procLaunch(
            spawnProcess("perl worker", "perl", [
              join(root, "chaos", "worker.pl"),
              servers.join(","),
              PERL_FUNCTION,
              join(ledgerDir, "perl.ledger"),
              "perl worker"
            ], { env: marker, logTo: logTo("perl worker") }),
            "ready"
          )
        )
      ]
      : []
    if (!perl) yield* say("Perl's Gearman::Worker is not installed: no Perl worker")
    const members = [mariadb2, ...gearmands, ...roles, ...workers, driver, ...perlWorkers]

    // The harness's clients go through the proxies too: a fault can fail or delay their calls.
    const shards = shardsFromUrls(dbUrls)
    if (Either.isLeft(shards))
      return yield* Effect.fail(new ChaosError({ message: shards.left.message, cause: shards.left }))
    const clients = Layer.mergeAll(
      StorageLayers.layer({ shards: shards.right }).pipe(
        Layer.mapError((e) => new ChaosError({ message: `the harness's storage: ${e.message}`, cause: e }))
      ),
      Gearman.layer({ servers })
    )

    // Load and faults.
    const book = makeBook()
    const faults: Array<Fault> = []
    const loadStart = Date.now()
    const loadEnd = loadStart + o.seconds * 1000
    yield* say(`load and faults for ${o.seconds} s (seed ${o.seed})`)
    const faultFiber = yield* Effect.fork(
      injectFaults(
        o.seed,
        o.overlap,
        { members, shardProxies, gearmanProxies, ownShard: mariadb2, ownDisk: o.diskFull ? disk : undefined },
        loadEnd,
        Math.min(4, Math.max(0.5, o.seconds / 120)),
        (f) => {
          faults.push(f)
          console.log(
            `  ${new Date(f.start).toISOString().slice(11, 23)} ${f.kind} (${f.target}), over after ${
              f.end - f.start
            } ms`
          )
        }
      )
    )
    yield* runLoad(random(o.seed ^ 0x5eed), book, loadEnd, perl).pipe(Effect.provide(clients))
    if (o.sabotage) {
      // Three jobs accepted like any other, due in a minute, whose rows are then deleted directly.
      const outcomes = yield* Client.insertJobs(
        ["x1", "x2", "x3"].map((id) => ({
          funcname: FUNCTION,
          arg: encodeArg({ id, kind: "single", sleepMs: 0, failUntil: 0 }),
          runAt: "+60"
        }))
      ).pipe(
        Effect.provide(clients),
        Effect.mapError((e) => new ChaosError({ message: `self-test insert: ${e.message}`, cause: e }))
      )
      yield* Effect.forEach(outcomes, (outcome, i) =>
        Effect.gen(function*() {
          const shard = allShardsById.get(outcome.handle.dbid)
          if (shard !== undefined) yield* deleteRow(shard, outcome.handle.jobid)
          const now = Date.now()
          book.accepted.set(`x${i + 1}`, {
            id: `x${i + 1}`,
            kind: "single",
            acceptedAt: now,
            dueAt: now,
            sleepMs: 0
          })
        }))
      yield* say("self-test: three accepted jobs deleted behind the roles' back; they must be reported lost")
    }
    yield* say(`load over: ${book.accepted.size} jobs accepted; waiting for the last fault to end`)
    yield* Fiber.join(faultFiber)

    // Healthy again: every process running and thawed, every proxy forwarding.
    yield* Effect.forEach(members, (m) => Effect.zipRight(m.thaw, m.start), { discard: true })
    yield* Effect.forEach([...shardProxies, ...gearmanProxies], (p) => p.proxy.unstall, { discard: true })

    // Drain (bounded): every accepted job run and no row left.
    const drainStart = Date.now()
    const drainDeadline = drainStart + o.drainSeconds * 1000
    const count = Effect.forEach(allShards, (s) =>
      rowsLeft(s).pipe(
        Effect.map((rows): number | string => rows),
        Effect.catchAll((e) => Effect.succeed<number | string>(e.message))
      ))
    let left: ReadonlyArray<number | string> = []
    while (true) {
      left = yield* count
      const ledger = readLedger(ledgerDir)
      const done = new Set(ledger.entries.filter((e) => e.ev === "done").map((e) => e.id))
      const pending = [...book.accepted.keys()].filter((id) => !done.has(id)).length
      if ((left.every((n) => n === 0) && pending === 0) || Date.now() > drainDeadline) {
        yield* say(
          `drain: ${pending} accepted job(s) not run, rows left ${left.join(" + ")}, after ${
            ((Date.now() - drainStart) / 1000).toFixed(1)
          } s`
        )
        break
      }
      // A process that died by itself (not by a fault) comes back.
      yield* Effect.forEach(members, (m) => m.start, { discard: true })
      yield* Effect.sleep(Duration.millis(500))
    }
    const drainMs = Date.now() - drainStart
    // Let the last completions land before reading the ledger for good.
    yield* Effect.sleep(Duration.millis(500))
    const ledger = readLedger(ledgerDir)
    const leftRows = yield* Effect.forEach(allShards, (s) => Effect.orElseSucceed(rowsOf(s), () => []))
    return {
      leftRows: leftRows.flat(),
      book,
      ledger,
      faults,
      loadStart,
      loadEnd,
      drainMs,
      rowsLeft: allShards.map((s, i) => ({ shard: s.id, rows: left[i] ?? "?" })),
      settings: {
        lease: o.lease,
        "controller-timeout": Math.max(1, o.lease - 2),
        "batch-run-sleep": 0.5,
        workers: o.workers,
        "driver children": "2–4",
        "worker concurrency": 8,
        perl,
        "drain bound": o.drainSeconds,
        "fault loops": o.overlap,
        "disk full": o.diskFull
      },
      startedAt
    }
  })

const program = Effect.gen(function*() {
  const o = yield* parseOptions(process.argv.slice(2))
  const startedAt = Date.now()
  const runId = `${process.pid}_${startedAt.toString(36)}`
  // Every process's output goes to a file here: kept when the run fails, removed when it passes.
  const logDir = mkdtempSync(join(tmpdir(), "garivini-chaos-logs-"))
  const result = yield* Effect.scoped(soak(o, runId, logDir, startedAt)).pipe(
    Effect.onInterrupt(() =>
      Effect.zipRight(
        Effect.sync(() => rmSync(logDir, { recursive: true, force: true })),
        Console.error("interrupted: every process stopped, the scratch databases and temporary files removed")
      )
    ),
    Effect.tapErrorCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Console.error(`the processes' output is in ${logDir}`)
    )
  )
  yield* say("stopped every process; checking")
  // Every process the run started (the Driver's children too) must be gone now that its scope is
  // closed; a Driver child finishing its job gets a few seconds.
  const leaked = () => [...new Set([...[...startedPids].filter(isAlive), ...processesOfRun(runId)])]
  const deadline = Date.now() + 10_000
  while (leaked().length > 0 && Date.now() < deadline) yield* Effect.sleep(Duration.millis(200))
  const leakedPids = leaked()
  const report: Report = analyse({
    seed: o.seed,
    loadSeconds: o.seconds,
    settings: result.settings,
    book: result.book,
    entries: result.ledger.entries,
    torn: result.ledger.torn,
    faults: result.faults,
    loadStart: result.loadStart,
    loadEnd: result.loadEnd,
    rowsLeft: result.rowsLeft,
    leftRows: result.leftRows,
    leakedPids,
    setupMs: result.loadStart - startedAt,
    drainMs: result.drainMs,
    wallMs: Date.now() - startedAt,
    explainSlackMs: o.lease * 1000
  })
  yield* Console.log(formatReport(report))
  if (o.json !== undefined) {
    writeFileSync(o.json, JSON.stringify(report, null, 2) + "\n")
    yield* say(`written to ${o.json}`)
  }
  writeFileSync(join(logDir, "faults.json"), JSON.stringify(report.faults, null, 2) + "\n")
  if (report.failed.length > 0) {
    yield* say(`the processes' output is in ${logDir}`)
    yield* Effect.sync(() => (process.exitCode = 1))
  } else yield* Effect.sync(() => rmSync(logDir, { recursive: true, force: true }))
})

NodeRuntime.runMain(
  program.pipe(
    Effect.tapErrorCause((cause) => {
      const failure = Cause.failureOption(cause)
      return Console.error(`chaos failed: ${Option.isSome(failure) ? failure.value.message : Cause.pretty(cause)}`)
    }),
    // The library's own logs (a shard avoided, a migration applied) only when they are errors.
    Logger.withMinimumLogLevel(LogLevel.Error)
  ),
  { disableErrorReporting: true }
)
