// docs/quickstart.md, run as a new user would: the package packed, installed into an empty folder
// (dependencies from the npm registry, or npm's cache when offline), then each `$` line of the
// page run as written and its output checked against the page. The page says 127.0.0.1:4730;
// here `up` listens on a free port (GARIVINI_LISTEN) and the other commands are pointed at it
// (GARIVINI_GEARMAND), and the port in the expected text is replaced with it.
import { execFile, spawn } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule, Schema } from "effect"
import { eventually } from "./gearman/gearmand.js"
import { childEnv } from "./support/env.js"
import { tempDir } from "./support/files.js"
import { freePort } from "./support/ports.js"

const DOC = "docs/quickstart.md"
/** Commands that keep running: started in the background, their lines awaited, then stopped. */
const LONG_RUNNING = new Set(["up", "consume"])

interface Step {
  readonly args: ReadonlyArray<string>
  readonly expected: ReadonlyArray<string>
}

/** The page's ```console blocks: `$ npx garivini …` lines, each followed by the output it shows. */
const stepsOf = (markdown: string): ReadonlyArray<Step> =>
  [...markdown.matchAll(/```console\n([\s\S]*?)```/g)].flatMap((block) => {
    const steps: Array<{ args: ReadonlyArray<string>; expected: Array<string> }> = []
    for (const line of block[1]!.trimEnd().split("\n")) {
      if (line.startsWith("$ ")) {
        const words = line.slice(2).trim().split(/\s+/)
        assert.deepStrictEqual(words.slice(0, 2), ["npx", "garivini"], line)
        steps.push({ args: words.slice(2), expected: [] })
      } else {
        steps.at(-1)!.expected.push(line)
      }
    }
    return steps
  })

/** An expected line as a pattern: `…` is any text, a run of spaces any run of spaces. */
const pattern = (line: string) =>
  new RegExp(
    `^${line.split("…").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/ +/g, " +")).join(".*")}$`
  )

/** Whether the expected lines appear in `output`, in order (`whole`: and nothing else). */
const matches = (output: string, expected: ReadonlyArray<string>, whole: boolean) => {
  const lines = output.split("\n").filter((l) => l.trim() !== "")
  if (whole) return lines.length === expected.length && expected.every((e, i) => pattern(e).test(lines[i]!))
  let at = 0
  for (const line of lines) if (at < expected.length && pattern(expected[at]!).test(line)) at++
  return at === expected.length
}

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const run = (command: string, args: ReadonlyArray<string>, cwd: string, env: Record<string, string>) =>
  Effect.async<Run>((resume) => {
    const child = execFile(
      command,
      args,
      { cwd, env, timeout: 120_000, killSignal: "SIGKILL" },
      (e, stdout, stderr) =>
        resume(Effect.succeed({ code: e === null ? 0 : typeof e.code === "number" ? e.code : 1, stdout, stderr }))
    )
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/** A long-running command; its output so far, and SIGINT with the scope (SIGKILL if it hangs). */
const background = (args: ReadonlyArray<string>, cwd: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    let stdout = ""
    let stderr = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn("npx", ["garivini", ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] })),
      (c) =>
        Effect.async<void>((resume) => {
          if (c.exitCode !== null || c.signalCode !== null) return resume(Effect.void)
          const kill = setTimeout(() => c.kill("SIGKILL"), 10_000)
          c.once("exit", () => resume(Effect.sync(() => clearTimeout(kill))))
          c.kill("SIGINT")
        })
    )
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    return { output: Effect.sync(() => ({ stdout, stderr })) }
  })

const PackEntry = Schema.parseJson(Schema.Tuple(Schema.Struct({ filename: Schema.String })))

describe("docs/quickstart.md", () => {
  it.scopedLive(
    "packed, installed into an empty folder, every command as the page shows",
    () =>
      Effect.gen(function*() {
        const doc = readFileSync(DOC, "utf8")
        // The install block, as written: the test installs the packed tarball in its place.
        assert.include(doc, "```sh\nmkdir my-jobs && cd my-jobs\nnpm init -y\nnpm install garivini\n```")
        const steps = stepsOf(doc)
        assert.deepStrictEqual(steps.map((s) => s.args[0]), ["up", "inject", "status", "consume", "status"])

        const root = yield* tempDir("garivini-quickstart-")
        const env = childEnv({ npm_config_update_notifier: "false" })
        const packed = yield* run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", root], ".", env)
        assert.strictEqual(packed.code, 0, packed.stderr)
        const tarball = join(root, Schema.decodeUnknownSync(PackEntry)(packed.stdout)[0].filename)

        const project = join(root, "my-jobs")
        mkdirSync(project)
        assert.strictEqual((yield* run("npm", ["init", "-y"], project, env)).code, 0)
        // better-sqlite3 downloads its native module from GitHub, or compiles it (minutes) where it
        // cannot: offered this repository's own build of the same version for the same Node, as a
        // local prebuild, it installs in seconds either way (a newer version would still compile).
        const prebuilds = join(root, "prebuilds")
        mkdirSync(prebuilds)
        const sqlite = JSON.parse(readFileSync("node_modules/better-sqlite3/package.json", "utf8")) as {
          version: string
        }
        const name =
          `better-sqlite3-v${sqlite.version}-node-v${process.versions.modules}-${process.platform}-${process.arch}`
        assert.strictEqual(
          (yield* run(
            "tar",
            [
              "-czf",
              join(prebuilds, `${name}.tar.gz`),
              "-C",
              "node_modules/better-sqlite3",
              "build/Release/better_sqlite3.node"
            ],
            ".",
            env
          )).code,
          0
        )
        const install = yield* run(
          "npm",
          ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball],
          project,
          { ...env, npm_config_better_sqlite3_local_prebuilds: prebuilds }
        )
        assert.strictEqual(install.code, 0, install.stderr)
        writeFileSync(join(root, "install.log"), install.stdout + install.stderr)

        const port = yield* freePort
        const webPort = yield* freePort
        const docPort = (lines: ReadonlyArray<string>) =>
          lines.map((l) => l.replaceAll("4730", String(port)).replaceAll("4780", String(webPort)))
        const upEnv = {
          ...env,
          GARIVINI_LISTEN: `127.0.0.1:${port}`,
          GARIVINI_WEB_LISTEN: `127.0.0.1:${webPort}`,
          GARIVINI_LOG_FORMAT: "logfmt"
        }
        const clientEnv = { ...env, GARIVINI_GEARMAND: `127.0.0.1:${port}`, GARIVINI_LOG_FORMAT: "logfmt" }

        for (const step of steps) {
          const expected = docPort(step.expected)
          const command = step.args[0]!
          if (LONG_RUNNING.has(command)) {
            const started = yield* background(step.args, project, command === "up" ? upEnv : clientEnv)
            yield* eventually(
              Effect.map(started.output, (o) => matches(o.stdout, expected, false)),
              `npx garivini ${step.args.join(" ")} to print what the page shows`,
              30_000
            ).pipe(
              Effect.tapDefect(() =>
                Effect.flatMap(started.output, (o) => Effect.logError("output so far", o.stdout, o.stderr))
              )
            )
            // The consumer's work is done once the next step sees no job left; `up` runs to the end.
            continue
          }
          // status after consume: the last completions may still be on their way.
          const result = yield* run("npx", ["garivini", ...step.args], project, clientEnv).pipe(
            Effect.filterOrFail((r) => matches(r.stdout, expected, true), (r) => r),
            Effect.retry({ times: 50, schedule: Schedule.spaced("100 millis") }),
            Effect.merge
          )
          assert.strictEqual(result.code, 0, result.stderr)
          assert.isTrue(matches(result.stdout, expected, true), `${step.args.join(" ")}:\n${result.stdout}`)
          // A one-shot command's stderr is empty on a healthy system.
          assert.strictEqual(result.stderr, "", step.args.join(" "))
        }
      }),
    120_000
  )
})
