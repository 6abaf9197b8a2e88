// The Gearman worker: registers its functions on every server (again after each reconnect),
// grabs with GRAB_JOB_UNIQ, sleeps with PRE_SLEEP until NOOP, and runs up to `concurrency`
// jobs at once. One connection per server carries several jobs: gearmand answers a GRAB sent
// while jobs run with another job, so a queued job costs one NOOP and one GRAB whatever the
// number of free slots, where a connection per slot would wake every sleeping one (the
// herd measured at 10-13 ms p50 in low-latency mode). Every batch of GRABs (one per free
// slot) is followed by PRE_SLEEP in the same write: gearmand answers it with a NOOP at once
// if jobs are still queued, else when one comes, so a job costs two writes per worker
// (GRAB + PRE_SLEEP, then its result) and a deep queue refills every free slot each round trip.
// Functions with a timeout keep one job per connection and sleep only after NO_JOB:
// PRE_SLEEP on a connection holding a job cancels that job's CAN_DO_TIMEOUT timer (gearmand 1.1).
// The grab/sleep state machine runs in the packet callbacks, without a fiber or Deferred per
// grab; only the job itself is a fiber. Stopping stops grabbing, lets in-flight jobs finish,
// then closes the connections with their writes flushed.
import { Cause, Deferred, Duration, Effect, Exit, Fiber, MetricLabel, Option, Runtime, Schedule } from "effect"
import type { Scope } from "effect"
import { keepConnected, watchdog, type Connection, type Transport } from "./connection.js"
import type { WorkException, WorkFail } from "./errors.js"
import { GearmanInvalidArgument } from "./errors.js"
import { answer, makeInFlight, type Assignment, type Outcome, type Run } from "./inFlight.js"
import { jobsProcessed } from "./metrics.js"
import { functionNameProblem, PacketType, request, type Packet } from "../protocol/gearman.js"
import type { Payload } from "./GearmanClient.js"

export interface GearmanJob {
  readonly server: string
  readonly handle: string
  readonly functionName: string
  readonly unique: string
  readonly payload: Buffer
  /** The payload read as UTF-8. */
  readonly text: () => string
  readonly sendData: (data: Payload) => Effect.Effect<void>
  readonly sendWarning: (data: Payload) => Effect.Effect<void>
  readonly sendStatus: (numerator: number, denominator: number) => Effect.Effect<void>
}

/**
 * A job handler. Success sends WORK_COMPLETE with the returned payload; `WorkFail` sends
 * WORK_FAIL; `WorkException` sends WORK_EXCEPTION; a defect is logged and sends WORK_FAIL.
 */
export type Handler<R = never> = (job: GearmanJob) => Effect.Effect<Payload | void, WorkFail | WorkException, R>

export type FunctionSpec<R = never> = Handler<R> | {
  readonly handler: Handler<R>
  readonly timeout?: Duration.DurationInput
  /**
   * The work a job stands for when it can arrive as more than one Gearman job (a stored job's
   * dbid:jobid): a job whose work is already running here joins that run instead of starting
   * another. It gets the same `GearmanJob` the handler will.
   */
  readonly workKey?: (job: GearmanJob) => string | undefined
}

export type Handlers<R = never> = Readonly<Record<string, FunctionSpec<R>>>

export interface ServeOptions {
  /** Jobs run at once over all servers. Default 1. */
  readonly concurrency?: number
  /**
   * Connections per server; the jobs are spread over them. Default 1, or `concurrency` when a
   * function has a timeout (such connections run one job at a time).
   */
  readonly connectionsPerServer?: number
  readonly clientId?: string
  /** Re-GRAB this often while asleep, in case a NOOP never comes (gearmand 1.1 epoch jobs). */
  readonly pollInterval?: Duration.DurationInput
  /** How long a stop waits for in-flight jobs before interrupting them. Default 30 s. */
  readonly shutdownTimeout?: Duration.DurationInput
}

export interface GearmanWorkerOptions extends ServeOptions {
  readonly servers: ReadonlyArray<string>
  readonly transport: Transport
  readonly reconnect?: Schedule.Schedule<unknown>
  readonly maxFrame?: number
  /** A GRAB or ECHO unanswered this long with nothing received drops the connection. Default 30 s. */
  readonly heartbeat?: Duration.DurationInput
}

const str = (b: Buffer | undefined) => (b === undefined ? "" : b.toString("utf8"))
const outcome = (name: string) => [MetricLabel.make("outcome", name)]
const counted = {
  complete: outcome("complete"),
  fail: outcome("fail"),
  exception: outcome("exception"),
  defect: outcome("defect")
}

/** One connection's grab state; mutated only from packet callbacks and job completions. */
interface Link {
  readonly connection: Connection
  /** Jobs assigned on this connection and not finished. */
  inFlight: number
  /** GRABs sent and not answered yet (each holds a permit). */
  grabs: number
  /** May GRAB: not asleep (no PRE_SLEEP since the last NOOP or poll). */
  awake: boolean
  /** Queued for a permit another connection holds. */
  waiting: boolean
  echoPending: boolean
  open: boolean
}

/**
 * Runs the handlers until the scope closes. Returns once every server had a first connection
 * attempt. A function name with whitespace or control characters fails it before anything is
 * registered (it would forge lines of the admin protocol, or split the CAN_DO packet).
 */
export const serve = <R>(
  handlers: Handlers<R>,
  options: GearmanWorkerOptions
): Effect.Effect<void, GearmanInvalidArgument, Scope.Scope | R> =>
  Effect.gen(function*() {
    for (const name of Object.keys(handlers)) {
      const problem = functionNameProblem(name)
      if (problem !== undefined)
        return yield* Effect.fail(new GearmanInvalidArgument({ message: `cannot serve it: ${problem}` }))
    }
    const runtime = yield* Effect.runtime<never>()
    const log = (message: string, ...rest: ReadonlyArray<unknown>) =>
      Runtime.runFork(runtime)(Effect.logWarning(message, ...rest))
    const logAt = (level: "Error" | "Info", message: string, annotations: Record<string, string>) =>
      Runtime.runFork(runtime)(
        (level === "Error" ? Effect.logError(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(annotations))
      )
    const concurrency = Math.max(1, options.concurrency ?? 1)
    const pollInterval = options.pollInterval ?? "10 seconds"
    const functions = Object.entries(handlers).map(([name, spec]) =>
      typeof spec === "function"
        ? { name, handler: spec, timeout: undefined, workKey: undefined }
        : { name, handler: spec.handler, timeout: spec.timeout, workKey: spec.workKey }
    )
    const timed = functions.some((f) => f.timeout !== undefined)
    const perServer = Math.max(1, options.connectionsPerServer ?? (timed ? concurrency : 1))
    const perConnection = timed ? 1 : Math.max(1, Math.ceil(concurrency / perServer))
    const byName = new Map(functions.map((f) => [f.name, f]))
    const inFlight = makeInFlight()
    let stopping = false
    /** Jobs that may still start, over every connection (a sent GRAB holds one). */
    let free = concurrency
    const needPermit: Array<Link> = []

    // A job is one fiber running its handler, nothing more: what follows its end (the outcome
    // to every delivery, the metric, the permit back, the next GRAB) runs in its exit observer,
    // not as Effect steps wrapped around the handler (two `ensuring`s and a match per job cost
    // more than the rest of the Gearman side of a job: docs/performance.md).
    const jobRuntime = yield* Effect.runtime<R>()
    const forkJob = Runtime.runFork(jobRuntime)
    const running = new Set<Fiber.RuntimeFiber<Payload | void, WorkFail | WorkException>>()
    /** Resolved once no job runs, after a stop began. */
    const drainedJobs = yield* Deferred.make<void>()

    const FAILED: Outcome = { type: PacketType.WORK_FAIL }
    /** The outcome of a job's exit (undefined: interrupted by a stop, left for the server to requeue). */
    const outcomeOf = (
      exit: Exit.Exit<Payload | void, WorkFail | WorkException>,
      fiber: Fiber.RuntimeFiber<Payload | void, WorkFail | WorkException>,
      job: GearmanJob
    ): Outcome | undefined => {
      if (Exit.isSuccess(exit)) {
        jobsProcessed.unsafeUpdate(1, counted.complete)
        return { type: PacketType.WORK_COMPLETE, data: exit.value ?? "" }
      }
      const cause = exit.cause
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        if (failure.value._tag === "WorkException") {
          jobsProcessed.unsafeUpdate(1, counted.exception)
          return { type: PacketType.WORK_EXCEPTION, data: failure.value.data }
        }
        jobsProcessed.unsafeUpdate(1, counted.fail)
        logFromJob(fiber, job, Effect.logInfo("gearman job failed", failure.value.reason ?? ""))
        return FAILED
      }
      // Interrupted by a stop: say nothing, the server requeues it when we leave. Interrupted
      // otherwise: a heartbeat found the job cancelled (roles/heartbeat.ts); it is answered
      // WORK_FAIL, so the server does not hand it to another worker.
      if (Cause.isInterruptedOnly(cause)) return stopping ? undefined : FAILED
      jobsProcessed.unsafeUpdate(1, counted.defect)
      logFromJob(fiber, job, Effect.logError("gearman job died", cause))
      return FAILED
    }
    /** Logs with the annotations the job's fiber ended with (a handler's own, e.g. the worker helper's). */
    const logFromJob = (fiber: Fiber.RuntimeFiber<unknown, unknown>, job: GearmanJob, line: Effect.Effect<void>) =>
      Runtime.runFork(
        Runtime.make({
          context: jobRuntime.context,
          fiberRefs: fiber.getFiberRefs(),
          runtimeFlags: jobRuntime.runtimeFlags
        })
      )(
        Effect.annotateLogs(line, { function: job.functionName, handle: job.handle })
      )

    /** Runs the handler in a fiber of its own; its outcome goes to every delivery of the run (inFlight.end). */
    const startJob = (link: Link, run: Run, job: GearmanJob, handler: Handler<R>): void => {
      link.inFlight++
      const fiber = forkJob(Effect.suspend(() => handler(job)))
      running.add(fiber)
      // Called at once if the handler already ended (a synchronous one ends inside runFork).
      fiber.addObserver((exit) => {
        running.delete(fiber)
        inFlight.end(run, outcomeOf(exit, fiber, job))
        // The outcome packet is already queued, so it leaves before the next GRAB.
        link.inFlight--
        release()
        pump(link)
        if (stopping && running.size === 0) Deferred.unsafeDone(drainedJobs, Exit.void)
      })
    }

    const grabPacket = request(PacketType.GRAB_JOB_UNIQ)
    const preSleepPacket = request(PacketType.PRE_SLEEP)

    /** Sends a GRAB per free slot the permits allow (then PRE_SLEEP, unless timed). */
    const pump = (link: Link): void => {
      if (stopping || !link.open || !link.awake) return
      const room = perConnection - link.inFlight - link.grabs
      if (room <= 0) return
      if (free === 0) {
        if (!link.waiting) {
          link.waiting = true
          needPermit.push(link)
        }
        return
      }
      for (let n = Math.min(room, free); n > 0; n--) {
        free--
        link.grabs++
        if (!link.connection.send(grabPacket)) {
          // Closed: the connection's finalizer hands back what its grabs hold.
          return
        }
      }
      if (!timed) {
        link.awake = false
        link.connection.send(preSleepPacket)
      }
    }

    /** A permit came back: connections that wanted one grab first. */
    const release = (): void => {
      free++
      while (free > 0 && needPermit.length > 0) {
        const link = needPermit.shift()!
        link.waiting = false
        pump(link)
      }
    }

    /** A job assigned on `link`: joins a run of the same job, or starts one. Its grab's permit is the job's. */
    const assigned = (link: Link, packet: Packet): void => {
      // JOB_ASSIGN: handle, function, payload; _UNIQ adds the unique; _ALL the unique and a reducer.
      const connection = link.connection
      const handle = str(packet.args[0])
      const functionName = str(packet.args[1])
      const unique = packet.type !== PacketType.JOB_ASSIGN ? str(packet.args[2]) : ""
      const payload = packet.args[packet.args.length - 1] ?? Buffer.alloc(0)
      const assignment: Assignment = { connection, handle }
      const fn = byName.get(functionName)
      if (!fn) {
        logAt("Error", "gearman job for a function this worker does not serve", { function: functionName, handle })
        answer(assignment, { type: PacketType.WORK_FAIL })
        release()
        return
      }
      // Data and status go to every delivery of the run: set before the handler can send any.
      let run: Run | undefined
      const send = (type: PacketType, args: ReadonlyArray<Payload>) =>
        Effect.sync(() => {
          if (run !== undefined) inFlight.send(run, type, args)
        })
      const job: GearmanJob = {
        server: connection.server,
        handle,
        functionName,
        unique,
        payload,
        text: () => payload.toString("utf8"),
        sendData: (data) => send(PacketType.WORK_DATA, [data]),
        sendWarning: (data) => send(PacketType.WORK_WARNING, [data]),
        sendStatus: (numerator, denominator) => send(PacketType.WORK_STATUS, [String(numerator), String(denominator)])
      }
      const work = fn.workKey?.(job)
      const running = inFlight.running(connection.server, handle, work)
      const kept = running === undefined ? inFlight.undelivered(connection.server, handle, job) : undefined
      if (running !== undefined || kept !== undefined) {
        // Not run again: the permit goes back at once, a joined delivery only waits for an answer.
        const annotations = {
          function: functionName,
          handle,
          server: connection.server,
          ...(work === undefined ? {} : { work })
        }
        if (running !== undefined) {
          inFlight.join(running, assignment)
          logAt("Info", "gearman job already running here: joined that run", {
            ...annotations,
            runningHandle: running.assignments[0]?.handle ?? ""
          })
        } else if (kept !== undefined) {
          answer(assignment, kept)
          logAt(
            "Info",
            "gearman job already run here, its answer lost with its connection: answered again",
            annotations
          )
        }
        release()
        return
      }
      run = inFlight.start(assignment, { functionName, unique, payload, work })
      startJob(link, run, job, fn.handler)
    }

    const onConnect = (connection: Connection) =>
      Effect.gen(function*() {
        const link: Link = {
          connection,
          inFlight: 0,
          grabs: 0,
          awake: true,
          waiting: false,
          echoPending: false,
          open: true
        }
        connection.setHandler((packet) => {
          switch (packet.type) {
            case PacketType.ECHO_RES:
              link.echoPending = false
              return
            case PacketType.NOOP:
              link.awake = true
              return pump(link)
            case PacketType.NO_JOB:
              if (link.grabs === 0) return log("gearman NO_JOB without a grab")
              link.grabs--
              release()
              // Timed functions sleep only now; a job queued since makes gearmand NOOP at once.
              if (timed && link.open && !stopping) {
                link.awake = false
                connection.send(preSleepPacket)
              }
              return
            case PacketType.JOB_ASSIGN:
            case PacketType.JOB_ASSIGN_UNIQ:
            case PacketType.JOB_ASSIGN_ALL:
              if (link.grabs === 0) return log("gearman assignment without a grab", packet.type)
              link.grabs--
              if (packet.oversized !== undefined) {
                // Its bytes were skipped: failing it ends the job; dropping the connection would
                // only hand it to the next worker, and the next, forever.
                const handle = str(packet.args[0])
                log(
                  `gearman job ${handle} (${
                    str(packet.args[1])
                  }) is ${packet.oversized} bytes, over this worker's packet limit: failed without running`
                )
                jobsProcessed.unsafeUpdate(1, counted.fail)
                connection.send(request(PacketType.WORK_FAIL, [handle]))
                release()
                return pump(link)
              }
              // Untimed, the PRE_SLEEP behind the grabs brings a NOOP if more jobs wait.
              assigned(link, packet)
              return pump(link)
            case PacketType.ERROR:
              return log("gearman server error", str(packet.args[0]), str(packet.args[1]))
            default:
              return log("gearman worker got an unexpected packet", packet.type)
          }
        })
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            // Unanswered grabs give their permits back; running jobs give theirs when they end.
            link.open = false
            const at = needPermit.indexOf(link)
            if (at >= 0) needPermit.splice(at, 1)
            link.waiting = false
            const held = link.grabs
            link.grabs = 0
            for (let i = 0; i < held; i++) release()
          })
        )
        // Registration is per connection: a reconnect starts from nothing.
        if (options.clientId !== undefined) connection.send(request(PacketType.SET_CLIENT_ID, [options.clientId]))
        for (const f of functions) {
          connection.send(
            f.timeout === undefined
              ? request(PacketType.CAN_DO, [f.name])
              : request(PacketType.CAN_DO_TIMEOUT, [
                f.name,
                String(Math.max(1, Math.round(Duration.toMillis(f.timeout))))
              ])
          )
        }
        yield* watchdog(connection, {
          timeout: options.heartbeat ?? "30 seconds",
          awaiting: () => link.grabs > 0 || link.echoPending,
          ping: () => {
            link.echoPending = true
            connection.send(request(PacketType.ECHO_REQ, ["ping"]))
          }
        })
        // gearmand 1.1 sends no NOOP when an epoch job comes due: a sleeper grabs again now and then.
        yield* Effect.sync(() => {
          if (link.awake) return
          link.awake = true
          pump(link)
        }).pipe(Effect.repeat(Schedule.spaced(pollInterval)), Effect.delay(pollInterval), Effect.forkScoped)
        pump(link)
      })

    yield* Effect.forEach(
      options.servers,
      (server) =>
        Effect.forEach(
          Array.from({ length: perServer }, (_, i) => i),
          (i) =>
            keepConnected({
              transport: options.transport,
              server,
              ...(options.reconnect ? { reconnect: options.reconnect } : {}),
              ...(options.maxFrame ? { maxFrame: options.maxFrame } : {}),
              onConnect
            }).pipe(
              Effect.flatMap((slot) => Deferred.await(slot.firstAttempt)),
              Effect.annotateLogs({ role: "gearman-worker", connection: i })
            ),
          { discard: true, concurrency: "unbounded" }
        ),
      { discard: true, concurrency: "unbounded" }
    )

    // Runs before the connections close (finalizers run in reverse order).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stopping = true
        const grace = options.shutdownTimeout ?? "30 seconds"
        if (running.size === 0) return
        yield* Effect.logInfo(
          `gearman worker stopping: waiting up to ${
            Duration.format(Duration.decode(grace))
          } for ${running.size} running job(s)`
        )
        // Finalizers run uninterruptibly: the wait must be made interruptible for the timeout to cut it.
        const drained = yield* Effect.interruptible(Deferred.await(drainedJobs)).pipe(Effect.timeoutOption(grace))
        if (Option.isNone(drained)) {
          yield* Effect.logWarning("gearman worker stop: interrupting jobs still running")
          yield* Fiber.interruptAll(Array.from(running))
        }
      })
    )
  })
