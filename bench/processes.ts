// Child processes for the as-deployed scenarios (bench/deployed.ts): the `garivini` command's roles
// from the built dist/, bench worker processes (bench/deployedWorker.ts bundled with esbuild) and
// Perl scripts. Each process lives for a scope: SIGTERM when it closes, SIGKILL after a grace period,
// and the scope waits for the exit, so nothing outlives a run or a Ctrl-C.
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { appendFileSync, readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as esbuild from "esbuild"
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { exited } from "../src/testing/gearmandProcess.js"
import { buildIfStale } from "../test/support/build.js"
import { BenchError, procCpuMs, serverCpuMeter, until } from "./harness.js"

export const root = fileURLToPath(new URL("..", import.meta.url))

/**
 * The `garivini` command runs dist/: build it when any source is newer (as the tests' global
 * set-up does), so a bench after an edit never measures stale code.
 */
export const ensureBuilt: Effect.Effect<void, BenchError> = Effect.try({
  try: () => buildIfStale(root, (line) => console.log(`  ${line}`)),
  catch: (e) => new BenchError({ message: `building dist/ for the garivini command: ${String(e)}` })
})

/** `entry` (a bench .ts file) and the sources it imports as one ES module run by plain node, removed with the scope. */
export const bundle = (entry: string): Effect.Effect<string, BenchError, Scope.Scope> => {
  // Inside node_modules so that the bundle's bare imports (effect, mysql2, …) resolve from there.
  const name = entry.replace(/^.*\//, "").replace(/\.ts$/, "")
  const outfile = join(root, "node_modules", ".cache", "garivini-bench", `${name}-${process.pid}.mjs`)
  return Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        esbuild.build({
          entryPoints: [join(root, "bench", entry)],
          outfile,
          bundle: true,
          packages: "external",
          platform: "node",
          format: "esm",
          target: "node20",
          logLevel: "error"
        }),
      catch: (e) =>
        new BenchError({ message: `bundling bench/${entry} with esbuild (installed with vite-node): ${String(e)}` })
    }).pipe(Effect.as(outfile)),
    (file) => Effect.sync(() => rmSync(file, { force: true }))
  )
}

export interface Proc {
  readonly name: string
  readonly pid: number
  /** The last 4,000 characters of its stderr. */
  readonly stderrTail: () => string
  /** Fails once the process has exited (it should run until its scope closes). */
  readonly alive: Effect.Effect<void, BenchError>
  /** Waits for a stderr or stdout line containing `text`. */
  readonly waitFor: (text: string, timeout: Duration.DurationInput) => Effect.Effect<void, BenchError>
  /** CPU time (user + system) it used so far, ms; undefined once it exited or off Linux. */
  readonly cpuMs: () => number | undefined
  /** Peak resident set (VmHWM) so far, in bytes; undefined once it exited or off Linux. */
  readonly peakRss: () => number | undefined
  /** Waits for the process to exit by itself (a client that ends), failing on a non-zero code. */
  readonly done: (timeout: Duration.DurationInput) => Effect.Effect<void, BenchError>
}

export interface SpawnOptions {
  readonly env?: Readonly<Record<string, string>>
  readonly onLine?: (line: string) => void
  /** SIGTERM, then SIGKILL after this long (default 5 s). */
  readonly grace?: Duration.DurationInput
  /** Append every line of its stdout and stderr to this file. */
  readonly logTo?: string
}

/** Peak resident set (VmHWM) of a live process, in bytes. */
export const vmHwm = (pid: number): number | undefined => {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/** The environment of a child: ours without the GARIVINI_* settings, so only the flags given count. */
const childEnv = (extra: Readonly<Record<string, string>>): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("GARIVINI_")) env[k] = v
  return { ...env, ...extra }
}

/**
 * Node options for every node process the bench starts, from BENCH_NODE_ARGS (space-separated), for
 * instance `--cpu-prof --cpu-prof-dir=/tmp/prof` (NODE_OPTIONS refuses --cpu-prof).
 */
const nodeArgs: ReadonlyArray<string> = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "")

/**
 * Starts `command args` for the life of the scope (node processes with BENCH_NODE_ARGS). With
 * BENCH_LOG_DIR set, every line a process prints goes to a file there named for it.
 */
export const spawnProcess = (
  name: string,
  command: string,
  args: ReadonlyArray<string>,
  options: SpawnOptions = {}
): Effect.Effect<Proc, BenchError, Scope.Scope> =>
  Effect.gen(function*() {
    const child: ChildProcess = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          spawn(command, command === process.execPath ? [...nodeArgs, ...args] : [...args], {
            cwd: root,
            env: childEnv(options.env ?? {}),
            stdio: ["ignore", "pipe", "pipe"]
          }),
        catch: (e) => new BenchError({ message: `starting ${name}: ${String(e)}` })
      }),
      (c) =>
        Effect.suspend(() => {
          if (c.exitCode !== null || c.signalCode !== null) return Effect.void
          c.kill("SIGTERM")
          // A plain timer, not Effect.timeout: a finalizer is uninterruptible, and a timeout there
          // would wait for the exit it gave up on (a role lets in-flight jobs finish for up to 30 s).
          const kill = setTimeout(
            () => c.kill("SIGKILL"),
            Duration.toMillis(Duration.decode(options.grace ?? Duration.seconds(5)))
          )
          return Effect.ensuring(exited(c), Effect.sync(() => clearTimeout(kill)))
        })
    )
    let stderr = ""
    const seen: Array<string> = []
    const waiters = new Set<{ readonly text: string; readonly resolve: () => void }>()
    const logDir = process.env.BENCH_LOG_DIR
    const logTo = options.logTo ??
      (logDir === undefined || logDir === ""
        ? undefined
        : join(logDir, `${name.replace(/\W+/g, "-")}-${child.pid}.log`))
    const line = (l: string) => {
      if (logTo !== undefined) appendFileSync(logTo, `${l}\n`)
      for (const w of waiters) {
        if (l.includes(w.text)) {
          waiters.delete(w)
          w.resolve()
        }
      }
      if (seen.length < 50) seen.push(l)
    }
    const reader = (onLine: (l: string) => void) => {
      let buffered = ""
      return (chunk: Buffer) => {
        buffered += chunk.toString("utf8")
        const lines = buffered.split("\n")
        buffered = lines.pop() ?? ""
        for (const l of lines) onLine(l)
      }
    }
    child.stdout?.on(
      "data",
      reader((l) => {
        line(l)
        options.onLine?.(l)
      })
    )
    child.stderr?.on("data", (chunk: Buffer) => void (stderr = (stderr + chunk.toString("utf8")).slice(-4000)))
    child.stderr?.on("data", reader(line))
    const exitText = () =>
      `${name} exited (${child.exitCode ?? child.signalCode}): ${stderr.trim().split("\n").slice(-5).join(" | ")}`
    const alive = Effect.suspend(() =>
      child.exitCode === null && child.signalCode === null
        ? Effect.void
        : Effect.fail(new BenchError({ message: exitText() }))
    )
    const waitFor = (text: string, timeout: Duration.DurationInput) =>
      Effect.raceFirst(
        Effect.async<void>((resume) => {
          if (seen.some((l) => l.includes(text))) return resume(Effect.void)
          const w = { text, resolve: () => resume(Effect.void) }
          waiters.add(w)
          return Effect.sync(() => void waiters.delete(w))
        }),
        Effect.zipRight(exited(child), Effect.fail(new BenchError({ message: exitText() })))
      ).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new BenchError({
              message: `${name}: no line with ${JSON.stringify(text)} within ${
                Duration.format(Duration.decode(timeout))
              }; stderr: ${stderr.trim().slice(-500)}`
            })
        })
      )
    const done = (timeout: Duration.DurationInput) =>
      exited(child).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new BenchError({ message: `${name} did not finish within ${Duration.format(Duration.decode(timeout))}` })
        }),
        Effect.zipRight(
          Effect.suspend(() =>
            child.exitCode === 0 ? Effect.void : Effect.fail(new BenchError({ message: exitText() }))
          )
        )
      )
    return {
      name,
      pid: child.pid ?? 0,
      stderrTail: () => stderr,
      alive,
      waitFor,
      cpuMs: () => (child.exitCode === null && child.pid !== undefined ? procCpuMs(child.pid) : undefined),
      peakRss: () => (child.exitCode === null && child.pid !== undefined ? vmHwm(child.pid) : undefined),
      done
    }
  })

/** `node bin/garivini.js <args>` (the built CLI, as users start it). */
export const garivini = (name: string, args: ReadonlyArray<string>, options: SpawnOptions = {}) =>
  spawnProcess(name, process.execPath, [join(root, "bin", "garivini.js"), ...args], options)

/**
 * CPU the given processes use from now on, per job, with the job server's and the database's
 * when `server` names the bench's gearmand (`serverCpuMeter`; the database figure is the whole
 * mariadbd, so on a shared machine it counts the neighbours' queries too).
 */
export const processCpuMeter = (
  groups: ReadonlyArray<readonly [string, ReadonlyArray<Proc>]>,
  server: string | undefined
) => {
  const total = (procs: ReadonlyArray<Proc>) => procs.reduce((sum, p) => sum + (p.cpuMs() ?? 0), 0)
  const start = groups.map(([, procs]) => total(procs))
  const servers = server === undefined ? undefined : serverCpuMeter(server)
  const per = (jobs: number, ms: number) => `${jobs > 0 ? Math.round((ms * 1000) / jobs) : 0} µs`
  return {
    perJob: (jobs: number): string => {
      const own = groups.map(([name, procs], i) => `${name} ${per(jobs, total(procs) - start[i]!)}`).join(", ")
      return `CPU per job: ${own}${servers === undefined ? "" : `; ${servers.perJob(jobs)}`}`
    },
    /** One group's CPU per job, e.g. "183 µs". */
    groupPerJob: (name: string, jobs: number): string => {
      const i = groups.findIndex(([group]) => group === name)
      return i < 0 ? "?" : per(jobs, total(groups[i]![1]) - start[i]!)
    }
  }
}

/** Polls until every process is alive and `check` holds. */
export const untilAlive = <E, R>(
  procs: ReadonlyArray<Proc>,
  check: Effect.Effect<boolean, E, R>,
  every: Duration.DurationInput,
  timeout: Duration.DurationInput,
  what: string
) => until(Effect.zipRight(Effect.forEach(procs, (p) => p.alive, { discard: true }), check), every, timeout, what)

/** Whether `perl -MGearman::Client -MGearman::Worker -e1` works (Debian: libgearman-client-perl). */
export const perlGearman = (): boolean => {
  try {
    execFileSync("perl", ["-MGearman::Client", "-MGearman::Worker", "-MJSON::PP", "-MTime::HiRes", "-e1"], {
      stdio: "ignore"
    })
    return true
  } catch {
    return false
  }
}
