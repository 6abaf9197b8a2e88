// The as-deployed scenarios of bench/run.ts (`--only deployed`, the headline table): the roles as
// processes started by the `garivini` command from the built dist/ (`queue-runner`, `injector`,
// `controller`, `up`), workers as separate processes running the worker helper
// (bench/deployedWorker.ts, bundled, plain node), clients in the bench process or, for the
// original's own workload, a Perl Gearman::Client (bench/perl/). Every process is killed with its
// scope. Throughput figures carry the same run's gearmand-only baseline and the ratio to it.
import { Context, Duration, Effect, Layer, Schema } from "effect"
import type { Scope } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import { freePort } from "../src/testing/gearmandProcess.js"
import * as Client from "../src/roles/Client.js"
import * as Injector from "../src/roles/Injector.js"
import { CONTROLLER_FUNCTION } from "../src/roles/QueueRunner.js"
import * as StorageLayers from "../src/storage/Storage.js"
import { tempDir } from "../test/support/files.js"
import type { BenchOptions, Figure } from "./harness.js"
import {
  atLeast,
  atMost,
  BenchError,
  figure,
  nowMs,
  paced,
  percentiles,
  perSecond,
  range,
  scratchDatabase,
  insertCopies,
  shardUrl,
  statementMeter,
  storageLayer,
  storedJobs
} from "./harness.js"
import type { Proc } from "./processes.js"
import type { ShardConfig } from "../src/storage/targets.js"
import { bundle, garivini, perlGearman, processCpuMeter, root, spawnProcess, untilAlive } from "./processes.js"

const MB = 1024 * 1024

/** How far ahead the warm stored → run scenario stores its jobs (whole seconds: run_after is one). */
const WARM_LEAD_SECONDS = 3

/** The Perl original's figures on a quiet 2-core machine (issue 16): one synchronous client 2 ms apart. */
const PERL_ORIGINAL = { p50: "3.6–4.0", p99: "5.8–6.5", max: "17–30", storedToRun: "420–430" } as const

/** The issue's targets for the as-deployed figures. */
const targets = {
  storedToRun: atLeast(0.6, "≥ 0.6× baseline"),
  p50: atMost(3.6, `below the Perl original (${PERL_ORIGINAL.p50} ms)`),
  p99: atMost(5.8, `below the Perl original (${PERL_ORIGINAL.p99} ms)`),
  max: atMost(17, `below the Perl original (${PERL_ORIGINAL.max} ms)`),
  sustained: atLeast(0.25, "≥ 0.25× baseline"),
  up: atLeast(0.3, "≥ 0.3× baseline"),
  rss: atMost(100, "≤ 100 MB")
}

const WorkerLine = Schema.parseJson(Schema.Union(
  Schema.Struct({ event: Schema.Literal("ready") }),
  Schema.Struct({ event: Schema.Literal("ran"), n: Schema.Number, lat: Schema.Array(Schema.Number) })
))
const decodeWorkerLine = Schema.decodeUnknownOption(WorkerLine)

/** Worker processes of one function: how many jobs they ran and the latencies they saw. */
interface Workers {
  readonly procs: ReadonlyArray<Proc>
  readonly ran: () => number
  /** The latencies reported since the last call. */
  readonly take: () => ReadonlyArray<number>
  /** Peak RSS of the largest worker process, bytes. */
  readonly peakRss: () => number
}

/** A progress line inside a scenario (the steps take tens of seconds). */
const phase = (what: string) => Effect.sync(() => console.log(`  · ${what}`))

/** Printed when a scenario's figures are in and its processes are being stopped (so slow stops show). */
const stopping = phase("measured; stopping its processes")

const failWith = (what: string) => (e: { readonly _tag: string; readonly message: string }) =>
  new BenchError({ message: `${what}: ${e._tag} ${e.message}` })

/** Waits until gearmand lists at least `n` workers for each function. */
const registered = (procs: ReadonlyArray<Proc>, functions: ReadonlyArray<string>, n: number, server: string) =>
  Effect.flatMap(Gearman.Gearman, (gearman) =>
    untilAlive(
      procs,
      Effect.map(gearman.admin.status(server).pipe(Effect.orElseSucceed(() => [])), (status) =>
        functions.every((fn) => (status.find((s) => s.name === fn)?.workers ?? 0) >= n)),
      "50 millis",
      "60 seconds",
      `${functions.join(", ")}: fewer than ${n} worker(s) registered with gearmand`
    ))

/**
 * Starts `count` bench worker processes serving `fn` over `db`; `ready` waits until each said so
 * and gearmand lists them (started early, they load while something else happens).
 */
const startWorkers = (script: string, count: number, fn: string, db: string, server: string, concurrency: number) =>
  Effect.gen(function*() {
    const ran: Array<number> = range(count).map(() => 0)
    let latencies: Array<number> = []
    const procs = yield* Effect.forEach(
      range(count),
      (i) =>
        spawnProcess(`worker process ${i + 1}`, process.execPath, [script], {
          env: { BENCH_GEARMAN: server, BENCH_DB: db, BENCH_FUNCTION: fn, BENCH_CONCURRENCY: String(concurrency) },
          onLine: (line) => {
            const decoded = decodeWorkerLine(line)
            if (decoded._tag === "None" || decoded.value.event !== "ran") return
            ran[i] = decoded.value.n
            for (const l of decoded.value.lat) latencies.push(l)
          }
        })
    )
    const ready = Effect.zipRight(
      Effect.forEach(procs, (p) => p.waitFor(`"event":"ready"`, "60 seconds"), { discard: true }),
      registered(procs, [fn], count, server)
    )
    const workers: Workers = {
      procs,
      ran: () => ran.reduce((a, b) => a + b, 0),
      take: () => {
        const taken = latencies
        latencies = []
        return taken
      },
      peakRss: () => Math.max(0, ...procs.map((p) => p.peakRss() ?? 0))
    }
    return { workers, ready }
  })

const spawnWorkers = (script: string, count: number, fn: string, db: string, server: string, concurrency: number) =>
  Effect.flatMap(
    startWorkers(script, count, fn, db, server, concurrency),
    ({ ready, workers }) => Effect.as(ready, workers)
  )

/** Waits until the workers ran `n` jobs in all. */
const ranAtLeast = (workers: Workers, n: number, timeout: Duration.DurationInput, what: string) =>
  untilAlive(
    workers.procs,
    Effect.sync(() => workers.ran() >= n),
    "20 millis",
    timeout,
    `${what}: the worker processes ran fewer than ${n} jobs`
  )

const rolesDrained = (procs: ReadonlyArray<Proc>, timeout: Duration.DurationInput, what: string) =>
  untilAlive(procs, Effect.map(storedJobs, (n) => n === 0), "50 millis", timeout, `${what}: rows left`)

/**
 * Waits until the workers ran `n` jobs and then until every row is gone: the table is counted only
 * once they ran, so that counting (a scan of every row, every 50 ms) does not load the database
 * the roles are measured on.
 */
const drained = (
  workers: Workers,
  n: number,
  procs: ReadonlyArray<Proc>,
  timeout: Duration.DurationInput,
  what: string
) => Effect.zipRight(ranAtLeast(workers, n, timeout, what), rolesDrained(procs, timeout, what))

/** A role command's usual flags; with `--deployed-metrics`, /metrics on a free port (scraped by no one). */
const roleArgs = (db: string, server: string, o: BenchOptions) => [
  "--db",
  db,
  "--gearmand",
  server,
  "--log-format",
  "logfmt",
  ...metricsArgs(o)
]

const metricsArgs = (o: BenchOptions) => o.deployedMetrics ? ["--metrics-listen", "127.0.0.1:0"] : []

const queueRunnerArgs = (o: BenchOptions) => [
  ...(o.batchRunSleep === undefined ? [] : ["--batch-run-sleep", String(o.batchRunSleep / 1000)]),
  ...(o.batchMaxSize === undefined ? [] : ["--batch-max-size", String(o.batchMaxSize)]),
  ...(o.watermark === undefined ? [] : ["--queue-watermark-depth", String(o.watermark)])
]

const rssFigure = (what: string, proc: Proc, note: string) => {
  const peak = proc.peakRss()
  return figure("deployed", `${what}, peak RSS`, peak === undefined ? null : peak / MB, "MB", {
    target: targets.rss,
    note
  })
}

const ratioFigures = (
  metric: string,
  rate: number,
  baseline: number | undefined,
  target: typeof targets.storedToRun | undefined,
  note: string
): ReadonlyArray<Figure> => [
  figure("deployed", metric, rate, "jobs/s", { note, ...(baseline === undefined ? {} : { baseline }) }),
  figure("deployed", `${metric}: ratio to the baseline`, baseline === undefined ? null : rate / baseline, "×", {
    ...(target === undefined ? {} : { target }),
    ...(baseline === undefined ? { note: "no baseline in this run" } : { baseline })
  })
]

/**
 * One synchronous caller for `seconds`, a call every `intervalMs` (or at the previous answer when
 * that came later): the round trips' latencies.
 */
const steadyCaller = <E, R>(seconds: number, intervalMs: number, call: Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    const roundTrips: Array<number> = []
    let next = performance.now()
    const deadline = next + seconds * 1000
    while (performance.now() < deadline) {
      const wait = next - performance.now()
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      const start = performance.now()
      next = start + intervalMs
      yield* call
      roundTrips.push(performance.now() - start)
    }
    return roundTrips
  })

/**
 * Stored → run on processes already warm, `passes` times over: `n` jobs stored by insertJobs
 * calls due WARM_LEAD_SECONDS ahead, timed from the first of them run to every row gone (so
 * neither the insert nor the dispatcher's poll for due jobs counts: the poll is said in the
 * note). The last pass is the figure; the earlier ones are in its note (V8 still optimizes
 * through them: CPU per job falls pass by pass, docs/performance.md).
 */
const warmStoredToRun = (
  passes: number,
  workers: Workers,
  n: number,
  fn: string,
  roles: ReadonlyArray<readonly [string, ReadonlyArray<Proc>]>,
  server: string | undefined,
  shard?: ShardConfig
) =>
  Effect.gen(function*() {
    const earlier: Array<string> = []
    for (let pass = 1; pass < passes; pass++) {
      const warmUp = yield* warmPass(workers, n, fn, roles, server, shard)
      earlier.push(`${Math.round(warmUp.rate).toLocaleString("en-US")} jobs/s (${warmUp.workersCpu})`)
    }
    const measured = yield* warmPass(workers, n, fn, roles, server, shard)
    return {
      rate: measured.rate,
      note: earlier.length === 0
        ? measured.note
        : `pass ${passes} of ${passes} on the same processes (earlier passes: ${earlier.join(", ")}); ${measured.note}`
    }
  })

const warmPass = (
  workers: Workers,
  n: number,
  fn: string,
  roles: ReadonlyArray<readonly [string, ReadonlyArray<Proc>]>,
  server: string | undefined,
  shard?: ShardConfig
) =>
  Effect.gen(function*() {
    yield* phase("warm stored → run")
    const before = workers.ran()
    const dueAt = Math.ceil(Date.now() / 1000) + WARM_LEAD_SECONDS
    yield* insertCopies(n, { funcname: fn, arg: "warm", runAt: dueAt }).pipe(
      Effect.mapError(failWith("inserting the warm jobs"))
    )
    if (Date.now() >= dueAt * 1000) {
      return yield* Effect.fail(
        new BenchError({ message: `storing ${n} jobs took past their due time (${WARM_LEAD_SECONDS} s ahead)` })
      )
    }
    const procs = [...roles.flatMap(([, p]) => p), ...workers.procs]
    // Meters read before the jobs are due, so that no query stands between their first run and
    // the start of the clock.
    const cpu = processCpuMeter([...roles, [`${workers.procs.length} worker processes`, workers.procs]], server)
    const statements = shard === undefined ? undefined : yield* statementMeter(shard)
    yield* ranAtLeast(workers, before + 1, "60 seconds", "warm stored → run (its first job)")
    const start = performance.now()
    const firstRunLag = Date.now() - dueAt * 1000
    yield* drained(workers, before + n, procs, Duration.seconds(60 + n / 100), "warm stored → run")
    const ms = performance.now() - start
    const perJob = statements === undefined ? "" : `; ${yield* statements.perJob(n)}`
    workers.take()
    return {
      rate: perSecond(n, ms),
      workersCpu: `workers ${cpu.groupPerJob(`${workers.procs.length} worker processes`, n)} CPU a job`,
      note: `${n} jobs stored by insertJobs due ${WARM_LEAD_SECONDS} s ahead, timed from the first of them run (${
        (firstRunLag / 1000).toFixed(2)
      } s into their due second: the dispatcher's poll) to every row gone (${(ms / 1000).toFixed(2)} s); ${
        cpu.perJob(n)
      }${perJob}`
    }
  })

// -- (a) stored → run and (b) steady latency, through `garivini queue-runner` ---------------------

const throughputDeployed = (o: BenchOptions, server: string, script: string, baseline: number | undefined) =>
  Effect.scoped(Effect.gen(function*() {
    const shard = yield* scratchDatabase("deployed")
    const db = shardUrl(shard)
    return yield* Effect.gen(function*() {
      const fn = "bench_dep"
      const n = o.deployedJobs
      // 1. N jobs stored by `garivini inject` (one insertJobs call), before anything runs.
      const injectStart = performance.now()
      const inject = yield* garivini("garivini inject", [
        "inject",
        "--db",
        db,
        "--count",
        String(n),
        "--function",
        fn,
        "--log-format",
        "logfmt"
      ])
      // 2. Worker processes (loading meanwhile), then one `garivini queue-runner`: from its start to every row gone.
      const { ready, workers } = yield* startWorkers(script, o.deployedWorkers, fn, db, server, o.concurrency)
      yield* inject.done(Duration.seconds(60 + n / 1000))
      const injectMs = performance.now() - injectStart
      yield* ready
      const spawned = performance.now()
      const runner = yield* garivini("garivini queue-runner", [
        "queue-runner",
        ...roleArgs(db, server, o),
        ...queueRunnerArgs(o)
      ])
      yield* runner.waitFor("running queue-runner", "60 seconds")
      const cpu = processCpuMeter([["queue-runner", [runner]], [
        `${o.deployedWorkers} worker processes`,
        workers.procs
      ]], server)
      const statements = yield* statementMeter(shard)
      const start = performance.now()
      yield* drained(workers, n, [runner, ...workers.procs], Duration.seconds(60 + n / 100), "deployed stored → run")
      const ms = performance.now() - start
      const cpuPerJob = cpu.perJob(n)
      const statementsPerJob = yield* statements.perJob(n)
      const rate = perSecond(n, ms)
      workers.take()

      // 3. Steady insertJob calls from this process: latency insert → worker start.
      const steady = Math.round(o.rate * o.deployedSteadySeconds)
      const before = workers.ran()
      const offered = yield* paced(
        steady,
        o.rate,
        () =>
          Effect.suspend(() => Client.insertJob({ funcname: fn, arg: String(nowMs()) })).pipe(
            Effect.asVoid,
            Effect.mapError(failWith("steady insertJob"))
          )
      )
      yield* ranAtLeast(workers, before + steady, "60 seconds", "deployed steady load")
      const lat = percentiles(workers.take())
      yield* rolesDrained([runner, ...workers.procs], "30 seconds", "deployed steady load")

      // 4. The same processes, warm (as long-running roles and workers are).
      const warm = yield* warmStoredToRun(
        o.deployedWarmPasses,
        workers,
        n,
        fn,
        [["queue-runner", [runner]]],
        server,
        shard
      )

      const setting = `garivini queue-runner (${
        queueRunnerArgs(o).join(" ") || "defaults"
      }) and ${o.deployedWorkers} worker processes ×${o.concurrency}`
      yield* stopping
      return [
        ...ratioFigures(
          `stored → run, ${n.toLocaleString("en-US")} jobs, warm processes`,
          warm.rate,
          baseline,
          targets.storedToRun,
          `${setting}, after the cold run and the steady load; ${warm.note}`
        ),
        ...ratioFigures(
          `stored → run, ${n.toLocaleString("en-US")} jobs, cold start`,
          rate,
          baseline,
          undefined,
          `${setting}; the processes' first jobs (JIT warming up); from the runner's first log line to every row gone (${
            (ms / 1000).toFixed(2)
          } s; runner start ${((start - spawned) / 1000).toFixed(1)} s more); stored by garivini inject in ${
            (injectMs / 1000).toFixed(1)
          } s; ${cpuPerJob}; ${statementsPerJob}; the Perl original: ${PERL_ORIGINAL.storedToRun} jobs/s`
        ),
        figure("deployed", `insert → worker start at ${o.rate} jobs/s through the queue-runner, p50`, lat.p50, "ms", {
          note: `${lat.n} insertJob calls from the bench process over ${o.deployedSteadySeconds} s (offered ${
            Math.round(offered)
          }/s); the in-process target: p50 ≤ 100 ms`
        }),
        figure("deployed", `insert → worker start at ${o.rate} jobs/s through the queue-runner, p99`, lat.p99, "ms", {
          note: `max ${lat.max.toFixed(1)} ms`
        }),
        rssFigure("garivini queue-runner", runner, `during stored → run and the steady load`),
        figure("deployed", "worker process (largest of them), peak RSS", workers.peakRss() / MB, "MB", {
          note: "the worker helper under node's defaults (a user's process)"
        })
      ]
    }).pipe(Effect.provide(Layer.mergeAll(storageLayer(shard), Gearman.layer({ servers: [server] }))))
  }))

// -- (c) low latency through `garivini injector`, `controller`, `queue-runner`; (e) Perl ------------

const injectBody = (fn: string) => JSON.stringify({ funcname: fn, arg: String(nowMs()) })

const lowLatencyDeployed = (o: BenchOptions, server: string, script: string, baseline: number | undefined) =>
  Effect.scoped(Effect.gen(function*() {
    const shard = yield* scratchDatabase("deployed_ll")
    const db = shardUrl(shard)
    return yield* Effect.gen(function*() {
      const fn = "bench_dep_ll"
      const injector = yield* garivini("garivini injector", [
        "injector",
        ...roleArgs(db, server, o),
        "--injector-concurrency",
        String(o.injectorConcurrency)
      ])
      const controller = yield* garivini("garivini controller", [
        "controller",
        ...roleArgs(db, server, o),
        "--controller-concurrency",
        String(o.controllerConcurrency)
      ])
      const runner = yield* garivini("garivini queue-runner", [
        "queue-runner",
        ...roleArgs(db, server, o),
        ...queueRunnerArgs(o)
      ])
      const roles = [injector, controller, runner]
      const { ready, workers } = yield* startWorkers(script, 1, fn, db, server, o.concurrency)
      yield* runner.waitFor("running queue-runner", "60 seconds")
      yield* registered(roles, [Injector.INJECT_FUNCTION, CONTROLLER_FUNCTION], 1, server)
      yield* ready
      const procs = [...roles, ...workers.procs]
      const gearman = yield* Gearman.Gearman
      const inject = (client: Gearman.GearmanService, funcname: string) =>
        Effect.suspend(() => client.submit(Injector.INJECT_FUNCTION, injectBody(funcname))).pipe(
          Effect.asVoid,
          Effect.mapError(failWith("inject_jobs"))
        )

      yield* phase("roles and worker up; warm-up")
      const warm = o.quick ? 100 : 500
      yield* Effect.forEach(range(warm), () => inject(gearman, fn), { concurrency: 4, discard: true })
      yield* ranAtLeast(workers, warm, "30 seconds", "deployed low-latency warm-up")
      workers.take()

      // 1. One synchronous client, a call every `deployedLlInterval` ms: submit → worker start.
      yield* phase("one synchronous client")
      const before = workers.ran()
      const rt = percentiles(yield* steadyCaller(o.deployedLlSeconds, o.deployedLlInterval, inject(gearman, fn)))
      yield* ranAtLeast(workers, before + rt.n, "30 seconds", "deployed low-latency injects")
      const lat = percentiles(workers.take())
      const setting =
        `garivini injector (×${o.injectorConcurrency}), controller (×${o.controllerConcurrency}) and queue-runner as three processes`
      const figures: Array<Figure> = [
        figure(
          "deployed",
          `low latency, submit → worker start, one client ${o.deployedLlInterval} ms apart, p50`,
          lat.p50,
          "ms",
          {
            target: targets.p50,
            note:
              `${lat.n} synchronous inject_jobs calls over ${o.deployedLlSeconds} s from the bench process; ${setting}; one worker process ×${o.concurrency}`
          }
        ),
        figure(
          "deployed",
          `low latency, submit → worker start, one client ${o.deployedLlInterval} ms apart, p99`,
          lat.p99,
          "ms",
          { target: targets.p99 }
        ),
        figure(
          "deployed",
          `low latency, submit → worker start, one client ${o.deployedLlInterval} ms apart, max`,
          lat.max,
          "ms",
          { target: targets.max }
        ),
        figure("deployed", "low latency, inject round trip (stored, answered), p50", rt.p50, "ms", {
          note: `p99 ${rt.p99.toFixed(2)} ms, max ${rt.max.toFixed(1)} ms`
        })
      ]

      // 2. (e) The original's own workload: a Perl Gearman::Client and a Perl Gearman::Worker, our roles in between.
      figures.push(...(yield* perlScenario(o, server, procs)))

      // 3. Sustained: `llClients` synchronous clients (a connection each), back to back.
      yield* phase(`${o.llClients} clients back to back`)
      const clients = yield* Effect.forEach(
        range(o.llClients),
        () => Effect.map(Layer.build(Gearman.layer({ servers: [server] })), Context.get(Gearman.Gearman))
      )
      const startCount = workers.ran()
      let accepted = 0
      const cpu = processCpuMeter([["injector", [injector]], ["controller", [controller]], [
        "worker process",
        workers.procs
      ]], server)
      const start = performance.now()
      const deadline = start + o.deployedSustainSeconds * 1000
      yield* Effect.forEach(
        clients,
        (client) =>
          Effect.whileLoop({
            while: () => performance.now() < deadline,
            body: () => inject(client, fn),
            step: () => void accepted++
          }),
        { concurrency: "unbounded", discard: true }
      )
      const injectMs = performance.now() - start
      yield* ranAtLeast(workers, startCount + accepted, "60 seconds", "deployed sustained injects")
      const executedMs = performance.now() - start
      const cpuPerJob = cpu.perJob(accepted)
      yield* rolesDrained(procs, "30 seconds", "deployed low latency")
      figures.push(
        ...ratioFigures(
          `low latency, sustained, ${o.llClients} synchronous clients`,
          perSecond(accepted, executedMs),
          baseline,
          targets.sustained,
          `${accepted} jobs injected in ${(injectMs / 1000).toFixed(1)} s, all run after ${
            (executedMs / 1000).toFixed(1)
          } s; ${setting}; one worker process ×${o.concurrency}; ${cpuPerJob} (the clients: the bench process)`
        ),
        rssFigure("garivini injector", injector, "over the low-latency runs"),
        rssFigure("garivini controller", controller, "over the low-latency runs"),
        rssFigure("garivini queue-runner (low-latency set)", runner, "idle but for its rounds")
      )
      yield* stopping
      return figures
    }).pipe(Effect.provide(Layer.mergeAll(storageLayer(shard), Gearman.layer({ servers: [server] }))))
  }))

const PerlDone = /^done (\d+) (\d+) ([\d.,]*)$/

const perlScenario = (
  o: BenchOptions,
  server: string,
  roles: ReadonlyArray<Proc>
): Effect.Effect<ReadonlyArray<Figure>, BenchError, Scope.Scope | Gearman.Gearman> =>
  Effect.gen(function*() {
    const metric = (what: string) =>
      `Perl client and worker, submit → worker start, ${o.deployedLlInterval} ms apart, ${what}`
    if (!perlGearman()) {
      console.log(
        "  note: Perl Gearman::Client is not installed (Debian: apt-get install -y libgearman-client-perl); the Perl scenario is skipped"
      )
      return [
        figure("deployed", metric("p50"), null, "ms", {
          note: "skipped: perl -MGearman::Client failed (apt-get install -y libgearman-client-perl)"
        })
      ]
    }
    const fn = "bench_dep_perl"
    const latencies: Array<number> = []
    const worker = yield* spawnProcess("Perl worker", "perl", [`${root}/bench/perl/worker.pl`, server, fn], {
      onLine: (line) => {
        if (line.startsWith("lat ")) latencies.push(Number(line.slice(4)))
      }
    })
    yield* registered([...roles, worker], [fn], 1, server)
    const run = (seconds: number) =>
      Effect.gen(function*() {
        const before = latencies.length
        const printed: { done: RegExpExecArray | null } = { done: null }
        const client = yield* spawnProcess("Perl client", "perl", [
          `${root}/bench/perl/client.pl`,
          server,
          fn,
          String(seconds),
          String(o.deployedLlInterval)
        ], {
          onLine: (line) => void (printed.done = PerlDone.exec(line) ?? printed.done)
        })
        yield* client.done(Duration.seconds(30 + seconds))
        const result = printed.done
        if (result === null) return yield* new BenchError({ message: "the Perl client printed no result line" })
        const [, ok, failed, rts] = result
        if (Number(failed) > 0)
          return yield* new BenchError({
            message: `the Perl client's inject_jobs failed ${failed} time(s) of ${Number(ok) + Number(failed)}`
          })
        const want = before + Number(ok)
        return { ok: Number(ok), want, rt: percentiles((rts ?? "").split(",").filter((s) => s !== "").map(Number)) }
      }).pipe(Effect.scoped)
    // Warm-up (the roles are warm already; this warms the Perl side and its connections).
    yield* phase("Perl worker up; Perl warm-up")
    const warm = yield* run(o.quick ? 0.2 : 0.5)
    yield* untilAlive(
      [...roles, worker],
      Effect.sync(() => latencies.length >= warm.want),
      "20 millis",
      "30 seconds",
      "Perl warm-up: the Perl worker did not run every job"
    )
    latencies.length = 0
    yield* phase("Perl client")
    const result = yield* run(o.deployedLlSeconds)
    yield* untilAlive(
      [...roles, worker],
      Effect.sync(() => latencies.length >= result.ok),
      "20 millis",
      "30 seconds",
      "Perl: the Perl worker did not run every job"
    )
    const lat = percentiles(latencies)
    return [
      figure("deployed", metric("p50"), lat.p50, "ms", {
        target: targets.p50,
        note:
          `${lat.n} synchronous do_task("inject_jobs") calls over ${o.deployedLlSeconds} s by a Perl Gearman::Client, a Perl Gearman::Worker; our injector, controller and queue-runner processes in between; the original on a quiet machine: p50 ${PERL_ORIGINAL.p50} / p99 ${PERL_ORIGINAL.p99} / max ${PERL_ORIGINAL.max} ms`
      }),
      figure("deployed", metric("p99"), lat.p99, "ms", { target: targets.p99 }),
      figure("deployed", metric("max"), lat.max, "ms", { target: targets.max }),
      figure("deployed", "Perl client, inject round trip, p50", result.rt.p50, "ms", {
        note: `p99 ${result.rt.p99.toFixed(2)} ms, max ${result.rt.max.toFixed(1)} ms`
      })
    ]
  })

// -- (d) `garivini up` (embedded job server, SQLite) with worker processes -------------------------

const upDeployed = (o: BenchOptions, script: string, baseline: number | undefined) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* tempDir("garivini-bench-up-")
    const filename = `${dir}/garivini.db`
    const db = `sqlite:${filename}`
    const port = yield* freePort
    const server = `127.0.0.1:${port}`
    const up = yield* garivini("garivini up", [
      "up",
      "--db",
      db,
      "--listen",
      server,
      "--log-format",
      "logfmt",
      ...metricsArgs(o),
      ...queueRunnerArgs(o)
    ])
    yield* up.waitFor("clients and workers connect to", "60 seconds")
    return yield* Effect.gen(function*() {
      const fn = "bench_dep_up"
      const workers = yield* spawnWorkers(script, o.deployedWorkers, fn, db, server, o.concurrency)
      const n = o.deployedUpJobs
      const cpu = processCpuMeter(
        [["garivini up", [up]], [`${o.deployedWorkers} worker processes`, workers.procs]],
        undefined
      )
      const start = performance.now()
      yield* insertCopies(n, { funcname: fn, arg: "pre" }).pipe(Effect.mapError(failWith("inserting")))
      yield* drained(workers, n, [up, ...workers.procs], Duration.seconds(60 + n / 100), "deployed garivini up")
      const ms = performance.now() - start
      const cpuPerJob = cpu.perJob(n)
      const warm = yield* warmStoredToRun(o.deployedWarmPasses, workers, n, fn, [["garivini up", [up]]], undefined)
      const setting =
        `garivini up over a SQLite file (embedded job server, queue-runner, injector, controller in one process), ${o.deployedWorkers} worker processes ×${o.concurrency} on the same file`
      yield* stopping
      return [
        ...ratioFigures(
          `garivini up (SQLite), stored → run, ${n.toLocaleString("en-US")} jobs, warm processes`,
          warm.rate,
          baseline,
          targets.up,
          `${setting}, after the cold run; ${warm.note}`
        ),
        ...ratioFigures(
          `garivini up (SQLite), stored → run, ${n.toLocaleString("en-US")} jobs, cold start`,
          perSecond(n, ms),
          baseline,
          undefined,
          `${setting}; the processes' first jobs; from the insert (insertJobs from the bench process) to every row gone, ${
            (ms / 1000).toFixed(2)
          } s; ${cpuPerJob}`
        ),
        rssFigure("garivini up", up, "during stored → run")
      ]
    }).pipe(Effect.provide(Layer.mergeAll(
      StorageLayers.layerSqlite({ filename }).pipe(
        Layer.mapError((e) => new BenchError({ message: `SQLite: ${e.message}` }))
      ),
      Gearman.layer({ servers: [server] })
    )))
  }))

/** Every as-deployed scenario; `step` runs and times each one. */
export const deployed = (
  o: BenchOptions,
  server: string,
  baseline: number | undefined,
  step: (name: string, effect: Effect.Effect<ReadonlyArray<Figure>, BenchError>) => Effect.Effect<void, BenchError>
) =>
  Effect.scoped(Effect.gen(function*() {
    const script = yield* bundle("deployedWorker.ts")
    yield* step(
      "deployed: stored → run and steady latency through garivini queue-runner",
      throughputDeployed(o, server, script, baseline)
    )
    yield* step(
      "deployed: low latency through garivini injector, controller, queue-runner",
      lowLatencyDeployed(o, server, script, baseline)
    )
    yield* step("deployed: garivini up (SQLite) with worker processes", upDeployed(o, script, baseline))
  }))
