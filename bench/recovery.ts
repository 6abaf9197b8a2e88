// `npm run bench:recovery`: the recovery figure (docs/job-life.md, the failure table). Per
// component killed (queue-runner, gearmand, worker, up), a deployment on the local MariaDB and a
// gearmand spawned here (the built `garivini` command's roles, worker processes writing a ledger:
// test/support/killRun.ts, which the kill tests run too) is SIGKILLed mid-run; it prints the
// seconds from the kill to the last job unfinished at the kill starting again, and to the last
// job done, and writes them as JSON. Not a test, no thresholds.
// Flags: --only queue-runner,gearmand,worker,up  --jobs N (2000)  --sleep-ms N (50)  --lease S (30)
//        --workers N (2)  --concurrency N (8)  --repeat N (1)  --out FILE (recovery-results.json)
import { writeFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { Effect, Logger, LogLevel } from "effect"
import { COMPONENTS, killRun, type Component, type KillReport } from "../test/support/killRun.js"

const { values } = parseArgs({
  strict: true,
  options: {
    only: { type: "string", default: COMPONENTS.join(",") },
    jobs: { type: "string", default: "2000" },
    "sleep-ms": { type: "string", default: "50" },
    lease: { type: "string", default: "30" },
    workers: { type: "string", default: "2" },
    concurrency: { type: "string", default: "8" },
    repeat: { type: "string", default: "1" },
    out: { type: "string", default: "recovery-results.json" }
  }
})

const positive = (name: string, text: string): number => {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} ${text}: not a positive number`)
  return n
}
const only = values.only.split(",").map((s) => s.trim()).filter((s) => s !== "")
const unknown = only.filter((s) => !(COMPONENTS as ReadonlyArray<string>).includes(s))
if (unknown.length > 0)
  throw new Error(`--only: unknown component(s) ${unknown.join(", ")}; known: ${COMPONENTS.join(", ")}`)
const settings = {
  jobs: Math.round(positive("jobs", values.jobs)),
  sleepMs: positive("sleep-ms", values["sleep-ms"]),
  lease: positive("lease", values.lease),
  workers: Math.round(positive("workers", values.workers)),
  concurrency: Math.round(positive("concurrency", values.concurrency)),
  repeat: Math.round(positive("repeat", values.repeat))
}

const program = Effect.gen(function*() {
  console.log(
    `Recovery after a SIGKILL mid-run: ${settings.jobs} jobs of ${settings.sleepMs} ms, ${settings.workers} worker processes × ${settings.concurrency}, lease ${settings.lease} s, node ${process.version}`
  )
  console.log(
    `${"killed".padEnd(14)}${"unfinished".padStart(11)}${"ran twice".padStart(11)}${"recovery s".padStart(12)}${
      "drained s".padStart(11)
    }`
  )
  const runs: Array<KillReport> = []
  for (const component of only as ReadonlyArray<Component>) {
    for (let i = 0; i < settings.repeat; i++) {
      const report = yield* Effect.scoped(
        killRun({ component, ...settings, killAfterDone: Math.floor(settings.jobs / 5) })
      )
      runs.push(report)
      console.log(
        `${component.padEnd(14)}${String(report.unfinishedAtKill).padStart(11)}${
          String(report.twice.length).padStart(11)
        }${report.recoverySeconds.toFixed(2).padStart(12)}${report.drainedSeconds.toFixed(2).padStart(11)}${
          report.unexplained.length > 0
            ? `  (${report.unexplained.length} ran twice though not running at the kill)`
            : ""
        }`
      )
    }
  }
  writeFileSync(
    values.out,
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, settings, runs }, null, 2)}\n`
  )
  console.log(`written to ${values.out}`)
})

Effect.runPromise(program.pipe(Logger.withMinimumLogLevel(LogLevel.Warning))).catch((e) => {
  console.error(e)
  process.exitCode = 1
})
