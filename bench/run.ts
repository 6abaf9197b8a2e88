// `npm run bench` (vite-node bench/run.ts): every scenario of issue 9 against a gearmand started
// here and scratch databases on the local MariaDB (dropped at the end). Prints one table, with
// issue 9's targets beside the figures (never asserted), and writes the results as JSON.
//
//   vite-node bench/run.ts [--quick] [--only deployed,baseline,insert,throughput,lowlatency,memory,embedded] [--out FILE]
//   scenario flags: --concurrency --workers --baseline-jobs --insert-single --insert-concurrent-jobs
//     --insert-callers --insert-batches --batch-size --jobs --rate --steady-seconds --batch-run-sleep
//     --batch-max-size --watermark (QueueRunner queueWatermarkDepth, 0 disables) --ll-rate --ll-seconds --ll-clients --ll-sustain-seconds --injector-concurrency
//     --controller-concurrency --memory-runner-jobs --memory-jobs --memory-checkpoint --embedded-jobs
//     --deployed-jobs --deployed-workers --deployed-steady-seconds --deployed-ll-seconds --deployed-ll-interval (ms)
//     --deployed-sustain-seconds --deployed-up-jobs
//     --deployed-warm-passes (stored → run passes on the same processes; the last is measured)
//     --deployed-metrics (the deployed roles serve /metrics on a free port: metrics on vs off)
// `deployed` (the headline table, bench/deployed.ts) runs the `garivini` command's roles as processes
// from dist/ (built first when older than src/) and needs the baseline, which it runs when not selected.
// MariaDB: GARIVINI_BENCH_MYSQL (default mysql://root@127.0.0.1:3306); gearmand from the PATH.
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as Os from "node:os"
import { parseArgs } from "node:util"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Context, Effect, Layer, Logger, LogLevel, Option } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import { scopedGearmand } from "../src/testing/gearmandProcess.js"
import type { BenchOptions, Figure } from "./harness.js"
import { BenchError, formatNumber, mariadbVersion, verdict } from "./harness.js"
import { embedded, mysqlStore, sqliteStore } from "./embedded.js"
import { deployed } from "./deployed.js"
import { memory } from "./memory.js"
import { ensureBuilt } from "./processes.js"
import { baseline, insert, lowLatency, throughput } from "./scenarios.js"
import { scratchShard } from "./support.js"

const SCENARIOS = ["deployed", "baseline", "insert", "throughput", "lowlatency", "memory", "embedded"] as const

const numberFlags = {
  concurrency: [8, 8],
  workers: [1, 1],
  "baseline-jobs": [100_000, 5_000],
  "insert-single": [3_000, 300],
  "insert-concurrent-jobs": [40_000, 3_000],
  "insert-callers": [64, 64],
  "insert-batches": [100, 5],
  "batch-size": [1000, 1000],
  jobs: [100_000, 5_000],
  rate: [1000, 1000],
  "steady-seconds": [20, 3],
  "ll-rate": [500, 500],
  "ll-seconds": [20, 2],
  "ll-clients": [16, 16],
  "ll-sustain-seconds": [15, 2],
  "injector-concurrency": [32, 32],
  "controller-concurrency": [64, 64],
  "memory-runner-jobs": [100_000, 3_000],
  "memory-jobs": [1_000_000, 20_000],
  "memory-checkpoint": [100_000, 2_000],
  "embedded-jobs": [20_000, 2_000],
  "deployed-jobs": [20_000, 2_000],
  "deployed-workers": [4, 4],
  "deployed-steady-seconds": [10, 2],
  "deployed-ll-seconds": [10, 2],
  "deployed-ll-interval": [2, 2],
  "deployed-sustain-seconds": [10, 2],
  "deployed-up-jobs": [10_000, 2_000],
  "deployed-warm-passes": [3, 1]
} as const satisfies Record<string, readonly [number, number]>
type NumberFlag = keyof typeof numberFlags

const optionalFlags = ["batch-run-sleep", "batch-max-size", "watermark"] as const

const parseOptions = (argv: ReadonlyArray<string>): Effect.Effect<BenchOptions, BenchError> =>
  Effect.try({
    try: () =>
      parseArgs({
        args: [...argv],
        strict: true,
        options: {
          quick: { type: "boolean", default: false },
          "deployed-metrics": { type: "boolean", default: false },
          out: { type: "string", default: "bench-results.json" },
          only: { type: "string", default: SCENARIOS.join(",") },
          ...Object.fromEntries(
            [...Object.keys(numberFlags), ...optionalFlags].map((name) => [name, { type: "string" as const }])
          )
        }
      }).values,
    catch: (e) =>
      new BenchError({
        message: `${e instanceof Error ? e.message : String(e)}; see the flags at the top of bench/run.ts`
      })
  }).pipe(
    Effect.flatMap((values: Readonly<Record<string, string | boolean | ReadonlyArray<string | boolean> | undefined>>) =>
      Effect.gen(function*() {
        const quick = values["quick"] === true
        const text = (name: string): string | undefined => {
          const v = values[name]
          return typeof v === "string" ? v : undefined
        }
        const positive = (name: string, given: string) => {
          const n = Number(given)
          return Number.isFinite(n) && n > 0
            ? Effect.succeed(n)
            : Effect.fail(new BenchError({ message: `--${name} ${given}: not a positive number` }))
        }
        const num = (name: NumberFlag) => {
          const given = text(name)
          return given === undefined ? Effect.succeed(numberFlags[name][quick ? 1 : 0]) : positive(name, given)
        }
        const opt = (name: (typeof optionalFlags)[number]) => {
          const given = text(name)
          return given === undefined ? Effect.succeed(undefined) : positive(name, given)
        }
        const only = (text("only") ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
        const unknown = only.filter((s) => !(SCENARIOS as ReadonlyArray<string>).includes(s))
        if (unknown.length > 0)
          return yield* Effect.fail(
            new BenchError({
              message: `--only: unknown scenario(s) ${unknown.join(", ")}; known: ${SCENARIOS.join(", ")}`
            })
          )
        const int = (name: NumberFlag) => Effect.map(num(name), Math.round)
        return {
          quick,
          out: text("out") ?? "bench-results.json",
          only,
          concurrency: yield* int("concurrency"),
          workers: yield* int("workers"),
          baselineJobs: yield* int("baseline-jobs"),
          insertSingle: yield* int("insert-single"),
          insertConcurrentJobs: yield* int("insert-concurrent-jobs"),
          insertCallers: yield* int("insert-callers"),
          insertBatches: yield* int("insert-batches"),
          batchSize: yield* int("batch-size"),
          jobs: yield* int("jobs"),
          rate: yield* num("rate"),
          steadySeconds: yield* num("steady-seconds"),
          batchRunSleep: yield* opt("batch-run-sleep"),
          batchMaxSize: yield* Effect.map(opt("batch-max-size"), (n) => (n === undefined ? undefined : Math.round(n))),
          watermark: values["watermark"] === "0"
            ? 0
            : yield* Effect.map(opt("watermark"), (n) => (n === undefined ? undefined : Math.round(n))),
          llRate: yield* num("ll-rate"),
          llSeconds: yield* num("ll-seconds"),
          llClients: yield* int("ll-clients"),
          llSustainSeconds: yield* num("ll-sustain-seconds"),
          injectorConcurrency: yield* int("injector-concurrency"),
          controllerConcurrency: yield* int("controller-concurrency"),
          memoryRunnerJobs: yield* int("memory-runner-jobs"),
          memoryJobs: yield* int("memory-jobs"),
          memoryCheckpoint: yield* int("memory-checkpoint"),
          embeddedJobs: yield* int("embedded-jobs"),
          deployedJobs: yield* int("deployed-jobs"),
          deployedWorkers: yield* int("deployed-workers"),
          deployedSteadySeconds: yield* num("deployed-steady-seconds"),
          deployedLlSeconds: yield* num("deployed-ll-seconds"),
          deployedLlInterval: yield* num("deployed-ll-interval"),
          deployedSustainSeconds: yield* num("deployed-sustain-seconds"),
          deployedUpJobs: yield* int("deployed-up-jobs"),
          deployedWarmPasses: yield* int("deployed-warm-passes"),
          deployedMetrics: values["deployed-metrics"] === true
        } satisfies BenchOptions
      })
    )
  )

const commandVersion = (command: string, args: ReadonlyArray<string>): string => {
  try {
    return execFileSync(command, [...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).split("\n")[0]!
      .trim()
  } catch {
    return "unknown"
  }
}

const machine = (server: string) =>
  Effect.gen(function*() {
    const gearman = yield* Effect.map(Layer.build(Gearman.layer({ servers: [server] })), Context.get(Gearman.Gearman))
    const gearmandVersion = yield* gearman.admin.version(server).pipe(
      Effect.orElseSucceed(() => commandVersion("gearmand", ["--version"]))
    )
    return {
      cpus: Os.availableParallelism(),
      cpuModel: Os.cpus()[0]?.model ?? "unknown",
      memoryGiB: Number((Os.totalmem() / 1024 ** 3).toFixed(1)),
      kernel: `${Os.type()} ${Os.release()}`,
      node: process.version,
      mariadb: yield* mariadbVersion(scratchShard("probe")),
      gearmand: gearmandVersion
    }
  }).pipe(Effect.scoped)

/** "0.08× of 15,951 jobs/s" for a throughput figure, "of 15,951 jobs/s" for a ratio. */
const versusBaseline = (f: Figure): string => {
  if (f.baseline === undefined) return ""
  const of = `of ${formatNumber(f.baseline)} jobs/s`
  if (f.unit === "×") return of
  return f.value === null ? of : `${formatNumber(f.value / f.baseline)}× ${of}`
}

const printTable = (title: string, figures: ReadonlyArray<Figure>, targetHeader: string) => {
  const rows = figures.map((f) => [
    f.scenario,
    f.metric,
    f.value === null ? "n/a" : `${formatNumber(f.value)} ${f.unit}`,
    versusBaseline(f),
    f.target?.text ?? "",
    verdict(f)
  ])
  const header = ["scenario", "figure", "value", "vs baseline (same run)", targetHeader, "verdict"]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd()
  console.log(`\n${title}\n`)
  console.log(line(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const r of rows) console.log(line(r))
  const notes = figures.filter((f) => f.note !== undefined)
  if (notes.length > 0) {
    console.log("\nnotes:")
    for (const f of notes) console.log(`  ${f.scenario} / ${f.metric}: ${f.note}`)
  }
}

const program = Effect.gen(function*() {
  const options = yield* parseOptions(process.argv.slice(2))
  const startedAt = new Date()
  const started = performance.now()
  const server = yield* scopedGearmand.pipe(Effect.mapError((e) => new BenchError({ message: e.message })))
  const env = yield* machine(server)
  console.log(
    `garivini bench${
      options.quick ? " --quick" : ""
    }: ${env.cpus} CPUs (${env.cpuModel}), ${env.memoryGiB} GiB, node ${env.node}, MariaDB ${env.mariadb}, gearmand ${env.gearmand} at ${server}`
  )

  const figures: Array<Figure> = []
  const selected = (name: (typeof SCENARIOS)[number]) => options.only.includes(name)
  const step = (name: string, effect: Effect.Effect<ReadonlyArray<Figure>, BenchError>) =>
    Effect.gen(function*() {
      console.log(`… ${name}`)
      const start = performance.now()
      const result = yield* effect
      figures.push(...result)
      console.log(`  ${name} done in ${((performance.now() - start) / 1000).toFixed(1)} s`)
    })

  let baselineRate: number | undefined
  if (selected("baseline") || selected("deployed")) {
    yield* step(
      selected("baseline") ? "baseline" : "baseline (for the ratios of the deployed scenarios)",
      baseline(options, server)
    )
    baselineRate = figures.find((f) => f.scenario === "baseline")?.value ?? undefined
  }
  if (selected("deployed") || selected("embedded")) yield* ensureBuilt
  if (selected("deployed")) yield* deployed(options, server, baselineRate, step)
  if (selected("insert")) yield* step("insert", insert(options))
  if (selected("throughput")) yield* step("throughput", throughput(options, server, baselineRate))
  if (selected("lowlatency")) yield* step("lowlatency", lowLatency(options, server))
  if (selected("memory")) yield* step("memory", memory(options, server))
  if (selected("embedded")) {
    yield* step("embedded", embedded(options, sqliteStore))
    yield* step("embedded over MariaDB", embedded(options, mysqlStore))
  }

  const seconds = (performance.now() - started) / 1000
  // Every throughput figure beside the same run's baseline (and, in the table, the ratio to it).
  const all = figures.map((f): Figure =>
    f.baseline === undefined && baselineRate !== undefined && f.unit === "jobs/s" && f.scenario !== "baseline"
      ? { ...f, baseline: baselineRate }
      : f
  )
  const headline = all.filter((f) => f.scenario === "deployed")
  if (headline.length > 0) {
    printTable(
      "As deployed (the garivini command's roles, workers and clients as separate processes):",
      headline,
      "target (issue 16)"
    )
  }
  printTable(
    headline.length > 0 ? "In process (diagnostic view):" : "Figures:",
    all.filter((f) => f.scenario !== "deployed"),
    "target (issue 9)"
  )
  console.log(`\ntotal ${seconds.toFixed(1)} s`)
  const { out, ...flags } = options
  writeFileSync(
    out,
    JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        seconds: Number(seconds.toFixed(1)),
        machine: env,
        options: flags,
        figures: all.map((f) => ({ ...f, verdict: verdict(f) || undefined }))
      },
      null,
      2
    ) + "\n"
  )
  console.log(`results written to ${out}`)
})

NodeRuntime.runMain(
  program.pipe(
    Effect.scoped,
    Effect.tapErrorCause((cause) => {
      const failure = Cause.failureOption(cause)
      return Console.error(`bench failed: ${Option.isSome(failure) ? failure.value.message : Cause.pretty(cause)}`)
    }),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  ),
  { disableErrorReporting: true }
)
