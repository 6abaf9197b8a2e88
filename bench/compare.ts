// `npm run bench:compare -- REV_A REV_B [--rounds N] [bench/run.ts flags]`: builds two
// revisions in scratch worktrees and runs `bench/run.ts` on them alternately (A B A B …), so both
// see the same machine in the same sitting; prints every figure of both with its spread.
//
//   npm run bench:compare -- main HEAD --rounds 2 --only baseline,throughput
//
// Each revision is measured with its own bench code: when B changed a scenario, say so beside the
// figures. Worktrees live under .scratch/compare/ and are reused (rebuilt each time).
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Data, Effect, Schema } from "effect"

class CompareError extends Data.TaggedError("CompareError")<{ readonly message: string; readonly cause?: unknown }> {}

const FigureJson = Schema.Struct({
  scenario: Schema.String,
  metric: Schema.String,
  value: Schema.NullOr(Schema.Number),
  unit: Schema.String
})
const ResultsJson = Schema.Struct({ figures: Schema.Array(FigureJson) })

const run = (command: string, args: ReadonlyArray<string>, cwd: string, inherit = false) =>
  Effect.try({
    try: () =>
      execFileSync(command, [...args], {
        cwd,
        encoding: "utf8",
        stdio: inherit ? "inherit" : ["ignore", "pipe", "pipe"]
      }) ?? "",
    catch: (cause) => new CompareError({ message: `${command} ${args.join(" ")} failed in ${cwd}`, cause })
  })

const root = fileURLToPath(new URL("..", import.meta.url))

/** A built checkout of `rev` under .scratch/compare/<sha>, with its locked dependencies. */
const prepare = (rev: string) =>
  Effect.gen(function*() {
    const sha = (yield* run("git", ["rev-parse", "--verify", `${rev}^{commit}`], root)).trim()
    const dir = join(root, ".scratch", "compare", sha.slice(0, 12))
    if (!existsSync(dir)) {
      mkdirSync(join(root, ".scratch", "compare"), { recursive: true })
      yield* run("git", ["worktree", "add", "--detach", dir, sha], root)
    }
    const sameLock = (yield* run("git", ["show", `${sha}:package-lock.json`], root)) ===
      readFileSync(join(root, "package-lock.json"), "utf8")
    if (!existsSync(join(dir, "node_modules"))) {
      // The same lock installs the same tree: hard links to ours cost nothing.
      if (sameLock) yield* run("cp", ["-al", join(root, "node_modules"), join(dir, "node_modules")], root)
      else yield* run("npm", ["ci", "--no-audit", "--no-fund"], dir, true)
    }
    yield* run("npm", ["run", "build"], dir)
    return { rev, sha, dir }
  })

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const fmt = (n: number) => (Math.abs(n) >= 100 ? Math.round(n).toLocaleString("en-US") : n.toPrecision(3))

const program = Effect.gen(function*() {
  // vite-node swallows a `--`: the two revisions and --rounds are ours, every other token is the bench's.
  const argv = process.argv.slice(2)
  const positionals: Array<string> = []
  const benchArgs: Array<string> = []
  let rounds = 2
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!
    if (token === "--rounds") rounds = Number(argv[++i])
    else if (positionals.length < 2 && !token.startsWith("-") && benchArgs.length === 0) positionals.push(token)
    else benchArgs.push(token)
  }
  if (positionals.length !== 2 || !Number.isInteger(rounds) || rounds < 1) {
    return yield* new CompareError({
      message: "usage: npm run bench:compare -- REV_A REV_B [--rounds N] [bench/run.ts flags]"
    })
  }
  const revs = [yield* prepare(positionals[0]!), yield* prepare(positionals[1]!)]
  const results = new Map<string, { unit: string; values: [Array<number>, Array<number>] }>()
  for (let round = 1; round <= rounds; round++) {
    for (const [i, r] of revs.entries()) {
      yield* Console.log(`\n=== round ${round}/${rounds}: ${r.rev} (${r.sha.slice(0, 9)}) ===`)
      const out = join(r.dir, `compare-${round}.json`)
      yield* run("npx", ["vite-node", "bench/run.ts", "--out", out, ...benchArgs], r.dir, true)
      const parsed = yield* Schema.decodeUnknown(Schema.parseJson(ResultsJson))(readFileSync(out, "utf8")).pipe(
        Effect.mapError((cause) => new CompareError({ message: `unreadable results in ${out}`, cause }))
      )
      for (const f of parsed.figures) {
        if (f.value === null) continue
        const key = `${f.scenario} / ${f.metric}`
        const entry = results.get(key) ?? { unit: f.unit, values: [[], []] }
        entry.values[i]!.push(f.value)
        results.set(key, entry)
      }
    }
  }
  yield* Console.log(
    `\nA = ${revs[0]!.rev} (${revs[0]!.sha.slice(0, 9)}), B = ${revs[1]!.rev} (${
      revs[1]!.sha.slice(0, 9)
    }), ${rounds} round(s), alternating`
  )
  const rows = [...results].map(([key, { unit, values: [a, b] }]) => [
    key,
    unit,
    a.map(fmt).join(" / "),
    b.map(fmt).join(" / "),
    a.length > 0 && b.length > 0 && median(a) !== 0 ? `${(median(b) / median(a)).toFixed(2)}×` : ""
  ])
  const header = ["figure", "unit", "A (each run)", "B (each run)", "B/A (medians)"]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ")
  yield* Console.log(line(header))
  yield* Console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const r of rows) yield* Console.log(line(r))
})

NodeRuntime.runMain(
  program.pipe(Effect.tapError((e) => Console.error(`bench:compare failed: ${e.message}`))),
  { disableErrorReporting: true }
)
