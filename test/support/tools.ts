// The C tools of Debian's gearman-tools (`gearman`, `gearadmin`), run as a user would.
import { execFile, spawn } from "node:child_process"
import { Effect } from "effect"
import { childEnv } from "./env.js"

const hint = (error: Error) =>
  (error as NodeJS.ErrnoException).code === "ENOENT" ? " (install it with: apt-get install -y gearman-tools)" : ""

/**
 * Runs a C tool to its end (30 s at most) with `input` on its stdin; its stdout, or stdout and
 * stderr together with `both` (the `gearman` client reports refusals on stderr and exits 0).
 */
export const tool = (
  file: "gearman" | "gearadmin",
  args: ReadonlyArray<string>,
  options: { readonly input?: string; readonly both?: boolean } = {}
) =>
  Effect.async<string, Error>((resume) => {
    const child = execFile(
      file,
      [...args],
      { timeout: 30_000, killSignal: "SIGKILL", env: childEnv() },
      (error, stdout, stderr) =>
        resume(
          error
            ? Effect.fail(new Error(`${file} ${args.join(" ")} failed${hint(error)}: ${error.message} ${stderr}`))
            : Effect.succeed(options.both ? stdout + stderr : stdout)
        )
    )
    child.stdin?.end(options.input)
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/** `gearadmin --status` against a job server on 127.0.0.1. */
export const gearadminStatus = (port: number) => tool("gearadmin", ["-h", "127.0.0.1", "-p", String(port), "--status"])

/** `gearman` (the client) against a job server on 127.0.0.1, with `args` after the address. */
export const gearmanClient = (
  port: number,
  args: ReadonlyArray<string>,
  options: { readonly input?: string; readonly both?: boolean } = {}
) => tool("gearman", ["-h", "127.0.0.1", "-p", String(port), ...args], options)

/**
 * `gearman -w` serving `fn` on a job server on 127.0.0.1: each job's payload piped through
 * `command`; `-c count` exits after that many jobs. SIGKILLed when the scope closes.
 */
export const gearmanWorker = (
  port: number,
  fn: string,
  command: ReadonlyArray<string>,
  options: { readonly count?: number } = {}
) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      spawn("gearman", [
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-w",
        ...(options.count === undefined ? [] : ["-c", String(options.count)]),
        "-f",
        fn,
        "--",
        ...command
      ], { stdio: "ignore", env: childEnv() })
    ),
    (child) => Effect.sync(() => void child.kill("SIGKILL"))
  )
