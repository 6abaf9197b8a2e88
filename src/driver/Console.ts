/**
 * The management console: Gearman::Driver's line protocol on TCP, so its console client and
 * scripts keep working. One command a line (CR LF or LF), answers in lines ending `\r\n`, every
 * answer closed by a `.` line (but `quit` and `shutdown`). Only the commands below are reachable
 * (the original dispatched to any method of the console object), and a missing argument is an
 * `ERR` line, never a stack trace. Bound to 127.0.0.1 unless configured otherwise.
 */
import * as Net from "node:net"
import { Data, Effect, Either, Option, Runtime, Schema } from "effect"
import type { JobState, Supervisor } from "./Supervisor.js"

export class ConsoleUnavailable extends Data.TaggedError("ConsoleUnavailable")<{ readonly host: string; readonly port: number; readonly reason: string }> {
  override get message(): string {
    return `cannot listen on ${this.host}:${this.port} for the console: ${this.reason}`
  }
}

/** A count argument: digits only (the original's `^\d+$`). */
const Count = Schema.compose(Schema.String.pipe(Schema.pattern(/^\d+$/)), Schema.NumberFromString)
const count = (arg: string | undefined): Option.Option<number> => Either.getRight(Schema.decodeUnknownEither(Count)(arg))

const iso = (epoch: number) => new Date(epoch * 1000).toISOString().slice(0, 19)

const fields = (s: JobState, processes: number) =>
  [s.job.name, String(s.min), String(s.max), String(processes), iso(s.lastrun), iso(s.lasterror), s.lasterrorMsg ? `ERROR: ${s.lasterrorMsg}` : ""] as const

/** `status`: one line a job, columns padded to the widest value, two spaces apart. */
export const statusLines = (states: ReadonlyArray<JobState>): ReadonlyArray<string> => {
  const rows = states.map((s) => fields(s, s.processes.size))
  const width = (i: number) => Math.max(1, ...rows.map((r) => r[i]!.length))
  return rows.map((r) =>
    [r[0].padEnd(width(0)), r[1].padStart(width(1)), r[2].padStart(width(2)), r[3].padStart(width(3)), r[4], r[5], r[6]].join("  ")
  )
}

export const HELP: ReadonlyArray<string> = [
  "status                              one line a job: name min max processes lastrun lasterror ERROR: msg",
  "show <job>                          the job's line, then its pids",
  "set_min_processes <job> <n>",
  "set_max_processes <job> <n>",
  "set_processes <job> <min> <max>",
  "kill <pid> ...                      SIGTERM to our processes (they finish their job first)",
  "killall <job> ... | killall *",
  "quit                                close this connection",
  "shutdown                            drain every process and stop the Driver",
  "help"
]

type Answer = { readonly _tag: "Lines"; readonly lines: ReadonlyArray<string> } | { readonly _tag: "Quit" } | { readonly _tag: "Shutdown" }
const lines = (...l: ReadonlyArray<string>): Answer => ({ _tag: "Lines", lines: [...l, "."] })
const err = (code: string, detail: string) => lines(`ERR ${code}: ${detail}`)

/** Runs one command line against the supervisor. */
export const execute = (supervisor: Supervisor, line: string): Effect.Effect<Answer> =>
  Effect.gen(function*() {
    // Perl's `split /\s+/`: a leading blank makes an empty command; trailing blanks are dropped.
    const words = line.split(/\s+/)
    while (words.length > 0 && words[words.length - 1] === "") words.pop()
    const [command = "", ...args] = words
    const job = (name: string | undefined) => supervisor.get(name ?? "")
    switch (command) {
      case "status":
        return lines(...statusLines(supervisor.states()))
      case "show": {
        const state = job(args[0])
        if (Option.isNone(state)) return err("invalid_job_name", args[0] ?? "")
        return lines(fields(state.value, state.value.processes.size).join("  "), ...[...state.value.processes.keys()].map(String))
      }
      case "set_min_processes":
      case "set_max_processes":
      case "set_processes": {
        const state = job(args[0])
        if (Option.isNone(state)) return err("invalid_job_name", args[0] ?? "")
        const s = state.value
        const which = command === "set_processes" ? "both" : command === "set_min_processes" ? "min" : "max"
        const min = which === "max" ? Option.some(s.min) : count(args[1])
        if (Option.isNone(min)) return err("invalid_value", "min_processes must be >= 0")
        const max = which === "min" ? Option.some(s.max) : count(args[which === "both" ? 2 : 1])
        if (Option.isNone(max)) return err("invalid_value", "max_processes must be >= 0")
        if (max.value < min.value) {
          return which === "min"
            ? err("invalid_value", "min_processes must be smaller than max_processes")
            : err("invalid_value", "max_processes must be greater than min_processes")
        }
        s.min = min.value
        s.max = max.value
        return lines("OK")
      }
      case "kill": {
        const ours = args.flatMap((a) => Option.toArray(Option.flatMap(count(a), supervisor.byPid)))
        if (ours.length === 0) return err("invalid_value", "the given PID(s) do not belong to us")
        yield* Effect.forEach(ours, ({ proc }) => supervisor.kill(proc), { discard: true })
        return lines("OK")
      }
      case "killall": {
        if (args.length === 0) return err("invalid_value", "no job_names given")
        const names = args.length === 1 && args[0] === "*" ? supervisor.states().map((s) => s.job.name) : args
        for (const name of names) {
          const state = job(name)
          // As the original: jobs named before an unknown one have been killed already.
          if (Option.isNone(state)) return err("invalid_job_name", name)
          yield* Effect.forEach(state.value.processes.values(), supervisor.kill, { discard: true })
        }
        return lines("OK")
      }
      case "help":
        return lines(...HELP)
      case "quit":
        return { _tag: "Quit" } as const
      case "shutdown":
        return { _tag: "Shutdown" } as const
      default:
        return err("unknown_command", command)
    }
  })

/** Serves the console until the scope closes. `shutdown` calls `onShutdown`. */
export const serve = (
  supervisor: Supervisor,
  options: { readonly host: string; readonly port: number; readonly onShutdown: Effect.Effect<void> }
) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const sockets = new Set<Net.Socket>()
    const server = Net.createServer((socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
      let buffer = ""
      // Commands of one connection run in order.
      let queue = Promise.resolve()
      socket.on("data", (chunk) => {
        buffer += chunk.toString("utf8")
        let nl: number
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, "")
          buffer = buffer.slice(nl + 1)
          queue = queue.then(() =>
            run(execute(supervisor, line)).then((answer) => {
              if (socket.destroyed) return
              if (answer._tag === "Lines") return void socket.write(answer.lines.map((l) => l + "\r\n").join(""))
              socket.end()
              if (answer._tag === "Shutdown") return run(options.onShutdown)
            }).catch(() => void socket.destroy())
          )
        }
        // A line longer than this is no command: drop the connection rather than buffer forever.
        if (buffer.length > 64 * 1024) socket.destroy()
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void, ConsoleUnavailable>((resume) => {
        server.once("error", (e) => resume(Effect.fail(new ConsoleUnavailable({ host: options.host, port: options.port, reason: e.message }))))
        server.listen(options.port, options.host, () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    yield* Effect.logInfo(`console listening on ${options.host}:${options.port}`)
  })
