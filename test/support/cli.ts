// The built `garivini` command as a test runs it: once to completion, or in the background.
import { execFile, spawn } from "node:child_process"
import { Deferred, Effect, Schema } from "effect"
import { childEnv } from "./env.js"

export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

// The web console of `up` on a free port: concurrent suites' `up`s would share its default one.
export const baseEnv = childEnv({ GARIVINI_LOG_FORMAT: "logfmt", GARIVINI_WEB_LISTEN: "127.0.0.1:0" })

export const garivini = (...args: ReadonlyArray<string>) => gariviniWithEnv({}, ...args)

/**
 * The command run once with `env` over the base environment. A hang guard: SIGKILLed after two
 * minutes (then it fails with code 1 and its output so far), and when the test is interrupted.
 */
export const gariviniWithEnv = (env: Readonly<Record<string, string>>, ...args: ReadonlyArray<string>) =>
  Effect.async<Result>((resume) => {
    const child = execFile(
      "node",
      ["bin/garivini.js", ...args],
      { env: { ...baseEnv, ...env }, timeout: 120_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        resume(
          Effect.succeed({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
        )
      }
    )
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/** A long-running `garivini` process; `stop` sends a signal and resolves with its exit. */
export const background = (...args: ReadonlyArray<string>) => backgroundWithEnv({}, ...args)

/** `background` with `env` over the base environment. */
export const backgroundWithEnv = (env: Readonly<Record<string, string>>, ...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const exit = yield* Deferred.make<Result>()
    let stdout = ""
    let stderr = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn("node", ["bin/garivini.js", ...args], { env: { ...baseEnv, ...env }, stdio: ["ignore", "pipe", "pipe"] })
      ),
      (c) => Effect.sync(() => c.kill("SIGKILL"))
    )
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.on(
      "exit",
      (code, signal) =>
        Effect.runSync(Deferred.succeed(exit, { code: code ?? (signal === null ? 1 : 128), stdout, stderr }))
    )
    return {
      output: Effect.sync(() => stdout),
      errors: Effect.sync(() => stderr),
      /** Sends a signal without waiting for the exit. */
      signal: (signal: NodeJS.Signals) => Effect.sync(() => void child.kill(signal)),
      /** Whether the process has exited yet. */
      exited: Effect.map(Deferred.poll(exit), (o) => o._tag === "Some"),
      /** Waits for the exit. */
      exit: Deferred.await(exit),
      stop: (signal: NodeJS.Signals) => Effect.zipRight(Effect.sync(() => child.kill(signal)), Deferred.await(exit))
    }
  })

const JobLine = Schema.parseJson(
  Schema.Struct({ handle: Schema.String, funcname: Schema.String, state: Schema.String })
)
export const listJobs = (db: string, ...filters: ReadonlyArray<string>) =>
  Effect.map(
    garivini("jobs", "list", "--db", db, "--json", "--limit", "10000", ...filters),
    (r) => r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => Schema.decodeUnknownSync(JobLine)(l))
  )
