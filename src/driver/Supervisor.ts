/**
 * The Driver's child processes: one `fork` of `childMain.js` per process, a set per Driver job.
 * It keeps what the children report over IPC (starting / idle / busy, last run, last error),
 * starts and drains processes, restarts crashed ones with backoff (holding back a crash loop),
 * and on close drains every child within the grace period (then SIGKILLs what is left).
 * Every start, whoever asks for it (min, the observer's demand, a console command, SIGHUP), goes
 * through `start`, which holds it within the limits: `startPerTick` a job per tick, `perJob`
 * live processes a job and `total` live processes in all (draining ones count: they still run).
 *
 * State is plain data mutated only from synchronous code on the event loop (child events and
 * Effect.sync blocks), so no two changes interleave; times are wall-clock ms read in those
 * callbacks (they are compared with each other only).
 */
import { fork, type ChildProcess } from "node:child_process"
import * as Readline from "node:readline"
import { fileURLToPath } from "node:url"
import type { Duration } from "effect"
import { Deferred, Effect, Either, FiberId, Option, Runtime } from "effect"
import * as Defaults from "../roles/defaults.js"
import type { DriverJob } from "./attributes.js"
import { CHILD_SPEC_ENV, decodeChildMessage, encodeChildSpec, type ParentMessage } from "./ipc.js"

export interface Process {
  readonly pid: number
  readonly child: ChildProcess
  state: "starting" | "idle" | "busy"
  /** Epoch ms since when it has been idle (or starting). */
  idleSince: number
  /** Asked to stop (drain, kill, shutdown): its exit is no crash. */
  stopping: boolean
  readonly exited: Deferred.Deferred<void>
}

export interface JobState {
  readonly job: DriverJob
  min: number
  max: number
  /** Unix seconds, 0 for never (per Driver job, last writer wins, as the original). */
  lastrun: number
  lasterror: number
  lasterrorMsg: string
  readonly processes: Map<number, Process>
  /** Crashes in a row (reset by a job that succeeds). */
  crashes: number
  /** Epoch ms before which no process of this job is started (crash backoff). */
  holdUntil: number
  /** Processes this job may still start before the next tick. */
  startBudget: number
}

/** Hard bounds on processes, so no config, console command or backlog can fork without end. */
export interface ProcessLimits {
  /** Processes a job may start per tick (250 ms). */
  readonly startPerTick: number
  /** Live processes a job may have; its max may not exceed this. */
  readonly perJob: number
  /** Live processes of all jobs together; the mins may not add up to more. */
  readonly total: number
}

export const DEFAULT_LIMITS: ProcessLimits = Defaults.driver.limits

/** Why these min/max values break the limits, if they do (console, config and reload share it). */
export const limitsViolation = (
  limits: ProcessLimits,
  jobs: ReadonlyArray<{ readonly name: string; readonly min: number; readonly max: number }>
): Option.Option<string> => {
  const over = jobs.find((j) => j.max > limits.perJob)
  if (over) return Option.some(`max_processes must be <= ${limits.perJob} (${over.name}: ${over.max})`)
  const mins = jobs.reduce((n, j) => n + j.min, 0)
  if (mins > limits.total) return Option.some(`min_processes of all jobs must add up to <= ${limits.total} (${mins})`)
  return Option.none()
}

export interface SupervisorOptions {
  readonly servers: ReadonlyArray<string>
  readonly workerOptions: (job: DriverJob) => Readonly<Record<string, unknown>>
  /** How long a stop waits for children to finish their job (default 30 s). */
  readonly shutdownTimeout?: Duration.DurationInput
  /** The compiled child entry (default: dist/driver/childMain.js, also from the CLI's bundle in dist/cli/). */
  readonly childEntry?: string
  readonly limits?: ProcessLimits
}

/** Crashes in a row after which a job is reported as crash-looping. */
export const CRASH_LOOP = 5
/** Backoff before restarting after the n-th crash in a row: 250 ms doubling, at most 30 s. */
export const crashBackoff = (n: number): number => Math.min(250 * 2 ** Math.max(0, n - 1), 30_000)

const nowSeconds = () => Math.floor(Date.now() / 1000)

export const make = (jobs: ReadonlyArray<DriverJob>, options: SupervisorOptions) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const runLog = (effect: Effect.Effect<void>) => void Runtime.runFork(runtime)(effect)
    const entry = options.childEntry ?? fileURLToPath(new URL("../driver/childMain.js", import.meta.url))
    const limits = options.limits ?? DEFAULT_LIMITS
    const states = new Map<string, JobState>(
      jobs.map((job) => [
        job.name,
        {
          job,
          min: job.min,
          max: job.max,
          lastrun: 0,
          lasterror: 0,
          lasterrorMsg: "",
          processes: new Map(),
          crashes: 0,
          holdUntil: 0,
          startBudget: limits.startPerTick
        }
      ])
    )
    const live = () => {
      let n = 0
      for (const state of states.values()) n += state.processes.size
      return n
    }
    let closing = false
    const tag = (pid: number, state: JobState) => `(${pid}) [${state.job.name}]`

    const spawnOne = (state: JobState): Effect.Effect<void> =>
      Effect.suspend(() => {
        const { job } = state
        const child = fork(entry, [], {
          env: {
            ...process.env,
            [CHILD_SPEC_ENV]: encodeChildSpec({
              modulePath: job.modulePath,
              group: job.group,
              servers: options.servers,
              options: options.workerOptions(job)
            })
          },
          stdio: ["ignore", "pipe", "pipe", "ipc"],
          execArgv: [],
          // Its own process group: a terminal's Ctrl-C reaches the Driver only, which drains the
          // children itself within the grace period.
          detached: true
        })
        const pid = child.pid
        if (pid === undefined) {
          // fork reports a failure to spawn through an `error` event; count it as a crash.
          child.once("error", () => {})
          state.crashes++
          state.holdUntil = Date.now() + crashBackoff(state.crashes)
          return Effect.logError(`[${job.name}] could not start a process`)
        }
        const proc: Process = {
          pid,
          child,
          state: "starting",
          idleSince: Date.now(),
          stopping: false,
          exited: Deferred.unsafeMake<void>(FiberId.none)
        }
        // Listeners go on before anything can yield, so no event of the child is missed.
        watch(state, proc)
        return Effect.logInfo(`${tag(pid, state)} Process started`)
      })

    const watch = (state: JobState, proc: Process) => {
      state.processes.set(proc.pid, proc)
      const { child } = proc
      for (const [stream, label] of [[child.stdout, "STDOUT"], [child.stderr, "STDERR"]] as const) {
        if (stream)
          Readline.createInterface({ input: stream }).on(
            "line",
            (line) => runLog(Effect.logInfo(`${tag(proc.pid, state)} ${label}: ${line}`))
          )
      }
      child.on("message", (raw) => {
        const decoded = decodeChildMessage(raw)
        if (Either.isLeft(decoded)) return runLog(Effect.logWarning(`${tag(proc.pid, state)} unreadable IPC message`))
        const message = decoded.right
        switch (message._tag) {
          case "ready":
            if (proc.state === "starting") proc.idleSince = Date.now()
            proc.state = proc.state === "busy" ? "busy" : "idle"
            // A drain sent before the child listened was lost: say it again.
            if (proc.stopping) send(proc, { _tag: "drain" })
            return
          case "busy":
            proc.state = "busy"
            return
          case "idle":
            proc.state = "idle"
            proc.idleSince = Date.now()
            state.lastrun = message.lastrun
            if (message.error) {
              state.lasterror = message.error.at
              state.lasterrorMsg = message.error.message
            } else {
              state.crashes = 0
            }
        }
      })
      child.on("error", (e) => runLog(Effect.logWarning(`${tag(proc.pid, state)} ${e.message}`)))
      child.on("exit", (code, signal) => {
        state.processes.delete(proc.pid)
        Deferred.unsafeDone(proc.exited, Effect.void)
        const status = signal === null ? `code ${code}` : `signal ${signal}`
        runLog(Effect.logInfo(`${tag(proc.pid, state)} Exited with status ${status}`))
        // Exit 0 is a drain (asked by us, or a SIGTERM from someone else): replaced, not a crash.
        if (proc.stopping || closing || code === 0) return
        // A crash: restart later, later still when it keeps happening.
        state.crashes++
        const delay = crashBackoff(state.crashes)
        state.holdUntil = Date.now() + delay
        state.lasterror = nowSeconds()
        state.lasterrorMsg = `process exited with ${status}` +
          (state.crashes >= CRASH_LOOP ? ` (${state.crashes} crashes in a row, held back ${delay / 1000} s)` : "")
        if (state.crashes >= CRASH_LOOP)
          runLog(
            Effect.logError(
              `[${state.job.name}] crash loop: ${state.crashes} crashes in a row; next start in ${delay / 1000} s`
            )
          )
      })
    }

    const send = (proc: Process, message: ParentMessage) => {
      if (proc.child.connected) proc.child.send(message)
      else proc.child.kill("SIGTERM")
    }

    /** Running processes not asked to stop. */
    const alive = (state: JobState): ReadonlyArray<Process> => [...state.processes.values()].filter((p) => !p.stopping)

    /**
     * Starts up to `wanted` processes unless the job is held back after crashes, within the
     * limits: what is left of this tick's budget, the job's and the total's room. The budget is
     * taken before anything yields, so callers running in the same tick share it.
     */
    const start = (state: JobState, wanted: number, why: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closing || wanted <= 0 || Date.now() < state.holdUntil) return Effect.void
        const n = Math.min(wanted, state.startBudget, limits.perJob - state.processes.size, limits.total - live())
        if (n <= 0) return Effect.void
        state.startBudget -= n
        return Effect.logDebug(`Starting ${n} new process(es) of type ${state.job.name}`).pipe(
          Effect.annotateLogs({ reason: why, wanted }),
          Effect.zipRight(Effect.repeatN(spawnOne(state), n - 1))
        )
      })

    /** Stop grabbing, finish the current job, exit. */
    const drain = (proc: Process): Effect.Effect<void> =>
      Effect.sync(() => {
        if (proc.stopping) return
        proc.stopping = true
        send(proc, { _tag: "drain" })
      })

    /** At least min processes (unless held back), at most max (the surplus drains, idle ones first). */
    const reconcile = Effect.suspend(() =>
      Effect.forEach(states.values(), (state) => {
        const running = alive(state)
        if (running.length < state.min) return start(state, state.min - running.length, "min")
        if (running.length > state.max) {
          const surplus = [...running].sort((a, b) => (a.state === "busy" ? 1 : 0) - (b.state === "busy" ? 1 : 0))
            .slice(0, running.length - state.max)
          return Effect.logDebug(
            `Stopping ${surplus.length} process(es) of type ${state.job.name} (over max ${state.max})`
          ).pipe(
            Effect.zipRight(Effect.forEach(surplus, drain, { discard: true }))
          )
        }
        return Effect.void
      }, { discard: true })
    )

    const supervisor = {
      states: (): ReadonlyArray<JobState> =>
        [...states.values()].sort((a, b) => (a.job.name < b.job.name ? -1 : a.job.name > b.job.name ? 1 : 0)),
      get: (name: string): Option.Option<JobState> => Option.fromNullable(states.get(name)),
      alive,
      start,
      drain,
      /** SIGTERM (the child drains on it); its exit counts as asked for. */
      kill: (proc: Process): Effect.Effect<void> =>
        Effect.sync(() => {
          proc.stopping = true
          proc.child.kill("SIGTERM")
        }),
      /** Finds a process of ours by pid. */
      byPid: (pid: number): Option.Option<{ readonly state: JobState; readonly proc: Process }> => {
        for (const state of states.values()) {
          const proc = state.processes.get(pid)
          if (proc) return Option.some({ state, proc })
        }
        return Option.none()
      },
      limits,
      /** Live processes of every job (draining ones included). */
      live,
      reconcile,
      /** A new tick: every job's start budget refilled, then a reconcile. */
      tick: Effect.suspend(() => {
        for (const state of states.values()) state.startBudget = limits.startPerTick
        return reconcile
      })
    }

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        const all = [...states.values()].flatMap((s) => [...s.processes.values()])
        for (const proc of all) {
          proc.stopping = true
          send(proc, { _tag: "drain" })
        }
        const done = yield* Effect.forEach(all, (p) => Deferred.await(p.exited), { discard: true }).pipe(
          Effect.interruptible,
          Effect.timeoutOption(options.shutdownTimeout ?? "30 seconds")
        )
        if (Option.isNone(done)) {
          yield* Effect.logWarning("driver stop: killing processes still running after the grace period")
          for (const proc of all) proc.child.kill("SIGKILL")
          yield* Effect.forEach(all, (p) => Deferred.await(p.exited), { discard: true })
        }
      })
    )
    return supervisor
  })

export type Supervisor = Effect.Effect.Success<ReturnType<typeof make>>
