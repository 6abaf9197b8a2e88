/**
 * The management console: Gearman::Driver's line protocol on TCP (so its console client and
 * scripts keep working) and, if asked, on a Unix socket only the Driver's user can open. One command a line (CR LF or LF), answers in lines ending `\r\n`, every
 * answer closed by a `.` line (but `quit` and `shutdown`). Only the commands below are reachable
 * (the original dispatched to any method of the console object), and a missing argument is an
 * `ERR` line, never a stack trace. Bound to 127.0.0.1 unless configured otherwise. A client can
 * neither stall the others nor grow the Driver's memory: lines, unread answers and connections
 * are bounded.
 */
import { chmodSync, unlinkSync } from "node:fs"
import * as Net from "node:net"
import { Data, Effect, Either, Option, Runtime, Schema } from "effect"
import { formatHostPort } from "../hostPort.js"
import { limitsViolation, type JobState, type Supervisor } from "./Supervisor.js"

export class ConsoleUnavailable extends Data.TaggedError("ConsoleUnavailable")<
  { readonly address: string; readonly reason: string; readonly cause?: unknown }
> {
  override get message(): string {
    return `cannot listen on ${this.address} for the console: ${this.reason}`
  }
}

/** A count argument: digits only (the original's `^\d+$`). */
const Count = Schema.compose(Schema.String.pipe(Schema.pattern(/^\d+$/)), Schema.NumberFromString)
const count = (arg: string | undefined): Option.Option<number> =>
  Either.getRight(Schema.decodeUnknownEither(Count)(arg))

const iso = (epoch: number) => new Date(epoch * 1000).toISOString().slice(0, 19)

const fields = (s: JobState, processes: number) =>
  [
    s.job.name,
    String(s.min),
    String(s.max),
    String(processes),
    iso(s.lastrun),
    iso(s.lasterror),
    s.lasterrorMsg ? `ERROR: ${s.lasterrorMsg}` : ""
  ] as const

/** `status`: one line a job, columns padded to the widest value, two spaces apart. */
export const statusLines = (states: ReadonlyArray<JobState>): ReadonlyArray<string> => {
  const rows = states.map((s) => fields(s, s.processes.size))
  const width = (i: number) => Math.max(1, ...rows.map((r) => r[i]!.length))
  return rows.map((r) =>
    [r[0].padEnd(width(0)), r[1].padStart(width(1)), r[2].padStart(width(2)), r[3].padStart(width(3)), r[4], r[5], r[6]]
      .join("  ")
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

type Answer = { readonly _tag: "Lines"; readonly lines: ReadonlyArray<string> } | { readonly _tag: "Quit" } | {
  readonly _tag: "Shutdown"
}
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
        return lines(
          fields(state.value, state.value.processes.size).join("  "),
          ...[...state.value.processes.keys()].map(String)
        )
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
        // The hard limits: no command may ask for more processes than the machine was sized for.
        const others = supervisor.states().filter((o) => o !== s).map((o) => ({
          name: o.job.name,
          min: o.min,
          max: o.max
        }))
        const refused = limitsViolation(supervisor.limits, [...others, {
          name: s.job.name,
          min: min.value,
          max: max.value
        }])
        if (Option.isSome(refused)) return err("invalid_value", refused.value)
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

/** Where a console listens: TCP (the original's, for its client and scripts) or a Unix socket. */
export type Listen =
  | { readonly _tag: "Tcp"; readonly host: string; readonly port: number }
  | { readonly _tag: "Unix"; readonly path: string }

const describe = (listen: Listen) => (listen._tag === "Tcp" ? formatHostPort(listen) : listen.path)

/** Longest command line, in bytes: a longer one is answered with an `ERR` and the connection closed. */
export const MAX_LINE_BYTES = 16 * 1024
/** Answers a client may leave unread (beyond what the kernel holds) before it is cut off. */
export const MAX_UNREAD_BYTES = 1024 * 1024
/** Console connections at once; more are closed as they come. */
export const MAX_CONNECTIONS = 32

/**
 * One connection: lines are run one at a time and the socket is paused while one runs, so a
 * client cannot queue more than one read's worth of input; a client that does not read its
 * answers is cut off once `MAX_UNREAD_BYTES` wait in memory. Either way only that connection ends.
 */
const connection = (
  socket: Net.Socket,
  run: (line: string) => Promise<Answer>,
  options: { readonly onShutdown: () => void; readonly log: (message: string) => void }
) => {
  let buffer: Buffer = Buffer.alloc(0)
  let running = false
  let done = false
  const finish = (lastWords?: string) => {
    done = true
    if (lastWords !== undefined) socket.end(lastWords)
    else socket.end()
  }
  const next = (): void => {
    if (running || done || socket.destroyed) return
    const nl = buffer.indexOf(0x0a)
    if ((nl < 0 ? buffer.length : nl) > MAX_LINE_BYTES) {
      options.log(`console client cut off: a line longer than ${MAX_LINE_BYTES} bytes`)
      return finish(`ERR invalid_value: line longer than ${MAX_LINE_BYTES} bytes\r\n.\r\n`)
    }
    if (nl < 0) return void socket.resume()
    const line = buffer.subarray(0, nl).toString("utf8").replace(/\r$/, "")
    buffer = buffer.subarray(nl + 1)
    running = true
    socket.pause()
    run(line).then(
      (answer) => {
        running = false
        if (done || socket.destroyed) return
        if (answer._tag !== "Lines") {
          finish()
          if (answer._tag === "Shutdown") options.onShutdown()
          return
        }
        socket.write(answer.lines.map((l) => l + "\r\n").join(""))
        if (socket.writableLength > MAX_UNREAD_BYTES) {
          options.log(`console client cut off: more than ${MAX_UNREAD_BYTES} bytes of answers unread`)
          done = true
          return void socket.destroy()
        }
        next()
      },
      () => void socket.destroy()
    )
  }
  socket.on("data", (chunk: Buffer) => {
    // After the last answer (quit, shutdown, a line too long) input is dropped, not kept.
    if (done) return
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
    next()
  })
}

/** Listens on a Unix socket only this user can use: created under umask 0177, then chmod 0600. */
const listenUnix = (server: Net.Server, path: string) => {
  const previous = process.umask(0o177)
  try {
    // The socket file is bound synchronously inside listen(), so the umask covers it.
    server.listen(path)
  } finally {
    process.umask(previous)
  }
}

/** A socket file left by a Driver that died answers nothing: it may be removed. A live one is kept. */
const staleSocket = (path: string) =>
  new Promise<boolean>((resolve) => {
    const probe = Net.connect(path)
    probe.once("connect", () => {
      probe.destroy()
      resolve(false)
    })
    probe.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"))
  })

const listenOnce = (server: Net.Server, listen: Listen) =>
  new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e)
    server.once("error", onError)
    server.once("listening", () => {
      server.off("error", onError)
      resolve()
    })
    if (listen._tag === "Tcp") server.listen(listen.port, listen.host)
    else listenUnix(server, listen.path)
  })

const listenOn = async (server: Net.Server, listen: Listen) => {
  try {
    await listenOnce(server, listen)
  } catch (e) {
    if (
      listen._tag !== "Unix" || (e as NodeJS.ErrnoException).code !== "EADDRINUSE" || !(await staleSocket(listen.path))
    ) throw e
    unlinkSync(listen.path)
    await listenOnce(server, listen)
  }
  if (listen._tag === "Unix") chmodSync(listen.path, 0o600)
}

/** Serves the console until the scope closes. `shutdown` calls `onShutdown`. */
export const serve = (
  supervisor: Supervisor,
  options: { readonly listen: Listen; readonly onShutdown: Effect.Effect<void> }
) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const where = describe(options.listen)
    const log = (message: string) =>
      void Runtime.runFork(runtime)(Effect.logWarning(message).pipe(Effect.annotateLogs({ console: where })))
    const sockets = new Set<Net.Socket>()
    const server = Net.createServer((socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
      connection(socket, (line) => run(execute(supervisor, line)), {
        onShutdown: () => void run(options.onShutdown),
        log
      })
    })
    server.maxConnections = MAX_CONNECTIONS
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => listenOn(server, options.listen),
        catch: (e) =>
          new ConsoleUnavailable({ address: where, reason: e instanceof Error ? e.message : String(e), cause: e })
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          // Closing a Unix socket's server removes its file.
          server.close(() => resume(Effect.void))
        })
    )
    yield* Effect.logInfo(`console listening on ${where}`)
  })
