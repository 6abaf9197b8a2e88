// What every scenario of `bench/run.ts` shares: options, figures and targets, scratch databases,
// timing, pacing and percentiles. Nothing here asserts a figure: targets are only printed beside them.
import { readdirSync, readFileSync } from "node:fs"
import { Data, Duration, Effect, Fiber, Layer, Redacted } from "effect"
import type { Scope } from "effect"
import * as Mysql from "mysql2/promise"
import type { ShardConfig } from "../src/storage/targets.js"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Client from "../src/roles/Client.js"
import type { JobSpec } from "../src/roles/Client.js"
import { migrate } from "../src/storage/migrate.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { mysqlBase, scratchShard } from "./support.js"

/** The environment is broken (no MariaDB, no gearmand) or a scenario could not finish. */
export class BenchError extends Data.TaggedError("BenchError")<{ readonly message: string }> {}

export interface BenchOptions {
  readonly quick: boolean
  readonly out: string
  readonly only: ReadonlyArray<string>
  /** Worker.serve / gearman serve: jobs in flight per serve instance. */
  readonly concurrency: number
  /** Worker.serve instances in this process (throughput, baseline). */
  readonly workers: number
  readonly baselineJobs: number
  readonly insertSingle: number
  readonly insertConcurrentJobs: number
  readonly insertCallers: number
  readonly insertBatches: number
  readonly batchSize: number
  readonly jobs: number
  readonly rate: number
  readonly steadySeconds: number
  /** QueueRunner batchRunSleep in ms (undefined: the library's default). */
  readonly batchRunSleep: number | undefined
  readonly batchMaxSize: number | undefined
  /** QueueRunner queueWatermarkDepth (undefined: the library's default, 4000; 0 disables). */
  readonly watermark: number | undefined
  readonly llRate: number
  readonly llSeconds: number
  readonly llClients: number
  readonly llSustainSeconds: number
  readonly injectorConcurrency: number
  readonly controllerConcurrency: number
  readonly memoryRunnerJobs: number
  readonly memoryJobs: number
  readonly memoryCheckpoint: number
  /** Jobs stored for the `embedded` scenario (`garivini up`). */
  readonly embeddedJobs: number
  /** As deployed: jobs stored by `garivini inject` before `garivini queue-runner` starts. */
  readonly deployedJobs: number
  /** As deployed: worker processes for stored → run (each `concurrency` slots). */
  readonly deployedWorkers: number
  /** As deployed: seconds of steady insertJob calls (at `rate`) through the queue-runner. */
  readonly deployedSteadySeconds: number
  /** As deployed, low latency: seconds of one synchronous client, and ms between its calls. */
  readonly deployedLlSeconds: number
  readonly deployedLlInterval: number
  /** As deployed, low latency: seconds of `llClients` clients back to back. */
  readonly deployedSustainSeconds: number
  /** As deployed: jobs stored for `garivini up` (SQLite) with worker processes. */
  readonly deployedUpJobs: number
  /**
   * As deployed: stored → run passes on the warm processes, the last one measured (the JIT
   * still compiles through the first passes; long-running roles are past that).
   */
  readonly deployedWarmPasses: number
  /** As deployed: the roles serve Prometheus metrics (`--metrics-listen 127.0.0.1:0`), to measure their cost. */
  readonly deployedMetrics: boolean
}

// -- figures and targets ------------------------------------------------------------------------

export interface Target {
  readonly op: ">=" | "<="
  readonly value: number
  /** How the target is written in issue 9. */
  readonly text: string
}

export interface Figure {
  readonly scenario: string
  readonly metric: string
  readonly value: number | null
  readonly unit: string
  readonly target?: Target
  readonly note?: string
  /** The same run's gearmand-only baseline (jobs/s), for a throughput figure or a ratio to it. */
  readonly baseline?: number
}

export const figure = (
  scenario: string,
  metric: string,
  value: number | null,
  unit: string,
  extra: { readonly target?: Target; readonly note?: string; readonly baseline?: number } = {}
): Figure => ({ scenario, metric, value, unit, ...extra })

export const atLeast = (value: number, text: string): Target => ({ op: ">=", value, text })
export const atMost = (value: number, text: string): Target => ({ op: "<=", value, text })

/** "met", or "missed by N %" (how far the figure is from the target, relative to the target). */
export const verdict = (f: Figure): string => {
  if (f.target === undefined) return ""
  if (f.value === null) return "n/a"
  const { op, value } = f.target
  const met = op === ">=" ? f.value >= value : f.value <= value
  if (met) return "met"
  if (value === 0) return `missed by ${formatNumber(Math.abs(f.value - value))} ${f.unit}`
  const off = op === ">=" ? (value - f.value) / value : (f.value - value) / value
  return `missed by ${off >= 10 ? `${formatNumber(off)}×` : `${Math.round(off * 100)} %`}`
}

export const formatNumber = (n: number): string =>
  Math.abs(n) >= 100 ? Math.round(n).toLocaleString("en-US") : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2)

// -- time, pacing, percentiles ------------------------------------------------------------------

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
export const nowMs = (): number => performance.timeOrigin + performance.now()

export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<readonly [A, number], E, R> =>
  Effect.suspend(() => {
    const start = performance.now()
    return Effect.map(effect, (a) => [a, performance.now() - start] as const)
  })

export const perSecond = (n: number, ms: number): number => (ms > 0 ? (n * 1000) / ms : 0)

/** CPU milliseconds (user + system) a process has used, from /proc (Linux); undefined if unreadable. */
export const procCpuMs = (pid: number): number | undefined => {
  try {
    // Fields after the command (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
  } catch {
    return undefined
  }
}

/** Pids of processes whose command line matches. */
const pidsOf = (match: (cmdline: string) => boolean): ReadonlyArray<number> => {
  try {
    return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
      try {
        return match(readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " ")) ? [Number(d)] : []
      } catch {
        return []
      }
    })
  } catch {
    return []
  }
}

/**
 * CPU the job server (the gearmand on `server`'s port) and the database (mariadbd / mysqld) use
 * from now on, per job: with the bench's own, where the two shared cores go.
 */
export const serverCpuMeter = (server: string) => {
  const port = server.slice(server.lastIndexOf(":") + 1)
  const gearmand = pidsOf((c) => c.includes("gearmand") && c.includes(`--port=${port}`))
  const database = pidsOf((c) => /(^|\/)(mariadbd|mysqld)( |$)/.test(c))
  const total = (pids: ReadonlyArray<number>) => pids.reduce((sum, pid) => sum + (procCpuMs(pid) ?? 0), 0)
  const g0 = total(gearmand)
  const d0 = total(database)
  return {
    /** "gearmand N µs, mariadbd M µs per job" (what could be read). */
    perJob: (jobs: number): string => {
      const per = (ms: number) => `${jobs > 0 ? Math.round((ms * 1000) / jobs) : 0} µs`
      const parts = [
        ...(gearmand.length > 0 ? [`gearmand ${per(total(gearmand) - g0)}`] : []),
        ...(database.length > 0 ? [`database ${per(total(database) - d0)}`] : [])
      ]
      return parts.length > 0 ? `${parts.join(", ")} of CPU per job` : "servers' CPU not readable"
    }
  }
}

/**
 * CPU time (user + system) this process spends from now on, per job: steadier than jobs/s on a
 * shared machine, where a busy neighbour lowers the rate but hardly the cost of a job.
 */
export const cpuMeter = () => {
  const start = process.cpuUsage()
  return {
    perJob: (jobs: number): number => {
      const used = process.cpuUsage(start)
      return jobs > 0 ? (used.user + used.system) / jobs : 0
    }
  }
}

/**
 * Starts `fire(i)` for i in [0, n) at a steady `rate` per second (open loop: a slow call does not
 * delay the next ones; a late timer catches up), then waits for all of them. Returns the offered rate.
 */
export const paced = <E, R>(
  n: number,
  rate: number,
  fire: (i: number) => Effect.Effect<void, E, R>
): Effect.Effect<number, E, R> =>
  Effect.gen(function*() {
    const interval = 1000 / rate
    const fibers: Array<Fiber.RuntimeFiber<void, E>> = []
    const start = performance.now()
    let i = 0
    while (i < n) {
      const due = Math.min(n, Math.floor((performance.now() - start) / interval) + 1)
      for (; i < due; i++) fibers.push(yield* Effect.fork(fire(i)))
      if (i < n) {
        const wait = start + i * interval - performance.now()
        yield* Effect.sleep(Duration.millis(Math.max(1, wait)))
      }
    }
    const offeredMs = performance.now() - start
    yield* Fiber.joinAll(fibers)
    return perSecond(n, Math.max(offeredMs, interval))
  })

export interface Percentiles {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export const percentiles = (samples: ReadonlyArray<number>): Percentiles => {
  const sorted = Float64Array.from(samples).sort()
  const at = (
    p: number
  ) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]!)
  return {
    n: sorted.length,
    p50: at(0.5),
    p99: at(0.99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!
  }
}

/** Counts handler runs (`hit` is synchronous, for the hot path); `reach(n)` waits until n ran. */
export const makeCounter = () => {
  let count = 0
  let waiter: { readonly target: number; readonly resolve: () => void } | undefined
  return {
    hit: (): void => {
      count++
      if (waiter !== undefined && count >= waiter.target) {
        const w = waiter
        waiter = undefined
        w.resolve()
      }
    },
    count: (): number => count,
    reach: (target: number, timeout: Duration.DurationInput, what: string): Effect.Effect<void, BenchError> =>
      Effect.suspend(() =>
        count >= target
          ? Effect.void
          : Effect.async<void>((resume) => {
            waiter = { target, resolve: () => resume(Effect.void) }
            return Effect.sync(() => void (waiter = undefined))
          })
      ).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new BenchError({
              message: `${what}: ${count} of ${target} jobs ran within ${Duration.format(Duration.decode(timeout))}`
            })
        })
      )
  }
}

/** Polls `check` every `every` until it holds, failing with `what` after `timeout`. */
export const until = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  every: Duration.DurationInput,
  timeout: Duration.DurationInput,
  what: string
) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep(every)
  }).pipe(Effect.timeoutFail({
    duration: timeout,
    onTimeout: () => new BenchError({ message: `${what} (gave up after ${Duration.format(Duration.decode(timeout))})` })
  }))

// -- environment ----------------------------------------------------------------------------------

const environmentHint =
  `start MariaDB on 127.0.0.1:3306 with root and no password (bash .ci/run does), or point GARIVINI_BENCH_MYSQL at one (now ${mysqlBase})`

const adminConnection = (shard: ShardConfig) =>
  Effect.tryPromise({
    try: () =>
      Mysql.createConnection({
        host: shard.host,
        port: shard.port,
        user: shard.user,
        password: Redacted.value(shard.password)
      }),
    catch: (e) =>
      new BenchError({
        message: `MariaDB unreachable at ${shard.host}:${shard.port} (${String(e)}): ${environmentHint}`
      })
  })

/** A freshly migrated scratch database for one scenario, dropped when the scope closes. */
export const scratchDatabase = (name: string): Effect.Effect<ShardConfig, BenchError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const shard = scratchShard(name)
      yield* dropDatabase(shard)
      yield* migrate([shard]).pipe(
        Effect.mapError((e) =>
          new BenchError({
            message: `cannot create the scratch database ${shard.database}: ${e.message}; ${environmentHint}`
          })
        )
      )
      return shard
    }),
    (shard) =>
      Effect.catchAll(dropDatabase(shard), (e) => Effect.logWarning(`could not drop ${shard.database}: ${e.message}`))
  )

/** One statement as root on its own connection to `shard`'s server: the rows it returned. */
const adminQuery = (shard: ShardConfig, sql: string) =>
  Effect.acquireUseRelease(
    adminConnection(shard),
    (conn) =>
      Effect.tryPromise({
        try: async () => {
          const [rows] = await conn.query(sql)
          return Array.isArray(rows) ? (rows as ReadonlyArray<Readonly<Record<string, unknown>>>) : []
        },
        catch: (e) => new BenchError({ message: `${sql}: ${String(e)}` })
      }),
    (conn) => Effect.promise(() => conn.end().catch(() => undefined))
  )

const dropDatabase = (shard: ShardConfig) => adminQuery(shard, `DROP DATABASE IF EXISTS \`${shard.database}\``)

/** `SELECT VERSION()` of the server holding `shard`. */
export const mariadbVersion = (shard: ShardConfig) =>
  Effect.map(adminQuery(shard, "SELECT VERSION() AS v"), (rows) => String(rows[0]?.v ?? "?"))

/** The server-wide statement counters `statementMeter` reads (SHOW GLOBAL STATUS). */
const STATEMENTS = [
  "Com_select",
  "Com_insert",
  "Com_update",
  "Com_delete",
  "Com_commit",
  "Com_stmt_prepare",
  "Com_stmt_execute",
  "Questions"
] as const

const statementCounts = (shard: ShardConfig) =>
  Effect.map(
    adminQuery(shard, `SHOW GLOBAL STATUS WHERE Variable_name IN (${STATEMENTS.map((s) => `'${s}'`).join(", ")})`),
    (rows) => new Map(rows.map((row) => [String(row.Variable_name).toLowerCase(), Number(row.Value)]))
  )

/**
 * Statements the database server ran from now on, per job ("statements per job: SELECT 0.02,
 * DELETE 0.11, …"): server-wide counters, so a neighbour's queries count too.
 */
export const statementMeter = (shard: ShardConfig) =>
  Effect.map(statementCounts(shard), (start) => ({
    perJob: (jobs: number) =>
      Effect.map(statementCounts(shard), (end) =>
        `statements per job: ${
          STATEMENTS.map((name) => {
            const key = name.toLowerCase()
            const n = (end.get(key) ?? 0) - (start.get(key) ?? 0)
            return `${name.replace(/^Com_/, "").toUpperCase()} ${jobs > 0 ? (n / jobs).toFixed(2) : "0"}`
          }).join(", ")
        }`)
  }))

/** Storage (MySQL) over one scratch shard. */
export const storageLayer = (shard: ShardConfig) =>
  StorageLayers.layer({ shards: [shard] }).pipe(
    Layer.mapError((e) => new BenchError({ message: `storage configuration: ${e.message}` }))
  )

/** Storage over one scratch shard and Gearman over one server: the roles' live layers. */
export const liveLayers = (shard: ShardConfig, server: string) =>
  Layer.mergeAll(storageLayer(shard), Gearman.layer({ servers: [server] }))

/** How many jobs are stored, over every state. */
export const storedJobs = Effect.flatMap(StorageLayers.Storage, (s) => s.counts()).pipe(
  Effect.map((counts) => counts.reduce((n, c) => n + StorageLayers.countedJobs(c), 0)),
  Effect.mapError((e) => new BenchError({ message: `counting stored jobs: ${e.message}` }))
)

/** `n` copies of one job stored by insertJobs calls of up to 10,000 jobs each. */
export const insertCopies = (n: number, spec: JobSpec) =>
  Effect.forEach(
    range(Math.ceil(n / 10_000)),
    (c) => Client.insertJobs(range(Math.min(10_000, n - c * 10_000)).map(() => spec)),
    { discard: true }
  )

/** A mysql:// URL for a shard, for child processes (GARIVINI_DB). */
export const shardUrl = (shard: ShardConfig): string => {
  const password = Redacted.value(shard.password)
  const auth = encodeURIComponent(shard.user) + (password === "" ? "" : `:${encodeURIComponent(password)}`)
  return `mysql://${auth}@${shard.host}:${shard.port}/${shard.database}`
}

export const range = (n: number): ReadonlyArray<number> => Array.from({ length: n }, (_, i) => i)
