// The Gearman worker: registers its functions on every server (again after each reconnect),
// grabs with GRAB_JOB_UNIQ, sleeps with PRE_SLEEP until NOOP, and runs up to `concurrency`
// jobs at once over several connections per server, one job per connection at a time:
// gearmand hands a connection one job at a time anyway, and a PRE_SLEEP on a connection
// holding a job would cancel that job's CAN_DO_TIMEOUT timer (gearmand 1.1). Stopping stops grabbing, lets in-flight
// jobs finish, then closes the connections with their writes flushed.
import { Cause, Deferred, Duration, Effect, Exit, Fiber, FiberSet, MetricLabel, Option, Runtime, Schedule, Scope } from "effect"
import { keepConnected, watchdog, type Connection, type Transport } from "./connection.js"
import { WorkException, WorkFail } from "./errors.js"
import { jobsProcessed } from "./metrics.js"
import { PacketType, request, type Packet } from "./protocol.js"
import type { Payload } from "./client.js"

export interface Job {
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
export type Handler<R = never> = (job: Job) => Effect.Effect<Payload | void, WorkFail | WorkException, R>

export type FunctionSpec<R = never> = Handler<R> | { readonly handler: Handler<R>; readonly timeout?: Duration.DurationInput }

export type Handlers<R = never> = Readonly<Record<string, FunctionSpec<R>>>

export interface ServeOptions {
  /** Jobs run at once over all servers. Default 1. */
  readonly concurrency?: number
  /** Connections per server, each running one job at a time. Default `concurrency`. */
  readonly connectionsPerServer?: number
  readonly clientId?: string
  /** Re-GRAB this often while asleep, in case a NOOP never comes (gearmand 1.1 epoch jobs). */
  readonly pollInterval?: Duration.DurationInput
  /** How long a stop waits for in-flight jobs before interrupting them. Default 30 s. */
  readonly shutdownTimeout?: Duration.DurationInput
}

export interface WorkerOptions extends ServeOptions {
  readonly servers: ReadonlyArray<string>
  readonly transport: Transport
  readonly reconnect?: Schedule.Schedule<unknown>
  readonly maxFrame?: number
  /** A GRAB or ECHO unanswered this long with nothing received drops the connection. Default 30 s. */
  readonly heartbeat?: Duration.DurationInput
}

const str = (b: Buffer | undefined) => (b === undefined ? "" : b.toString("utf8"))
const outcome = (name: string) => [MetricLabel.make("outcome", name)]
const counted = { complete: outcome("complete"), fail: outcome("fail"), exception: outcome("exception"), defect: outcome("defect") }

/** Runs the handlers until the scope closes. Returns once every server had a first connection attempt. */
export const serve = <R>(handlers: Handlers<R>, options: WorkerOptions): Effect.Effect<void, never, Scope.Scope | R> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const log = (message: string, ...rest: ReadonlyArray<unknown>) => Runtime.runFork(runtime)(Effect.logWarning(message, ...rest))
    const concurrency = Math.max(1, options.concurrency ?? 1)
    const perServer = Math.max(1, options.connectionsPerServer ?? concurrency)
    const pollInterval = options.pollInterval ?? "10 seconds"
    const permits = yield* Effect.makeSemaphore(concurrency)
    const functions = Object.entries(handlers).map(([name, spec]) =>
      typeof spec === "function" ? { name, handler: spec, timeout: undefined } : { name, handler: spec.handler, timeout: spec.timeout }
    )
    const byName = new Map(functions.map((f) => [f.name, f.handler]))
    let stopping = false

    // Jobs live in their own scope so a stop can wait for them before connections close.
    const jobScope = yield* Scope.make()
    yield* Effect.addFinalizer((exit) => Scope.close(jobScope, exit))
    const jobs = yield* FiberSet.make<void, never>().pipe(Scope.extend(jobScope))

    const runJob = (connection: Connection, packet: Packet): Effect.Effect<void, never, R> => {
      const uniq = packet.type === PacketType.JOB_ASSIGN_UNIQ
      const handle = str(packet.args[0])
      const functionName = str(packet.args[1])
      const unique = uniq ? str(packet.args[2]) : ""
      const payload = packet.args[uniq ? 3 : 2] ?? Buffer.alloc(0)
      const send = (type: PacketType, args: ReadonlyArray<Payload>) => Effect.sync(() => void connection.send(request(type, [handle, ...args])))
      const finish = (type: PacketType, args: ReadonlyArray<Payload>, tag: (typeof counted)[keyof typeof counted]) =>
        Effect.sync(() => {
          jobsProcessed.unsafeUpdate(1, tag)
          connection.send(request(type, [handle, ...args]))
        })
      const job: Job = {
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
      const annotate = Effect.annotateLogs({ function: functionName, handle })
      const handler = byName.get(functionName)
      if (!handler) {
        return Effect.logError("gearman job for a function this worker does not serve").pipe(annotate, Effect.zipRight(send(PacketType.WORK_FAIL, [])))
      }
      return Effect.suspend(() => handler(job)).pipe(
        Effect.matchCauseEffect({
          onSuccess: (out) => finish(PacketType.WORK_COMPLETE, [out ?? ""], counted.complete),
          onFailure: (cause) => {
            const failure = Cause.failureOption(cause)
            if (Option.isSome(failure)) {
              return failure.value._tag === "WorkException"
                ? finish(PacketType.WORK_EXCEPTION, [failure.value.data], counted.exception)
                : Effect.logInfo("gearman job failed", failure.value.reason ?? "").pipe(annotate, Effect.zipRight(finish(PacketType.WORK_FAIL, [], counted.fail)))
            }
            // Interrupted by a forced stop: say nothing, the server requeues it when we leave.
            if (Cause.isInterruptedOnly(cause)) return Effect.void
            return Effect.logError("gearman job died", cause).pipe(annotate, Effect.zipRight(finish(PacketType.WORK_FAIL, [], counted.defect)))
          }
        })
      )
    }

    const onConnect = (connection: Connection) =>
      Effect.gen(function* () {
        let grab: Deferred.Deferred<Packet> | undefined
        let wake: Deferred.Deferred<void> | undefined
        let echoPending = false
        connection.setHandler((packet) => {
          switch (packet.type) {
            case PacketType.ECHO_RES:
              echoPending = false
              return
            case PacketType.NOOP:
              if (wake) Deferred.unsafeDone(wake, Exit.void)
              return
            case PacketType.NO_JOB:
            case PacketType.JOB_ASSIGN:
            case PacketType.JOB_ASSIGN_UNIQ:
            case PacketType.JOB_ASSIGN_ALL: {
              const waiting = grab
              grab = undefined
              if (waiting) Deferred.unsafeDone(waiting, Exit.succeed(packet))
              else log("gearman assignment without a grab", packet.type)
              return
            }
            case PacketType.ERROR:
              return log("gearman server error", str(packet.args[0]), str(packet.args[1]))
            default:
              return log("gearman worker got an unexpected packet", packet.type)
          }
        })
        // Registration is per connection: a reconnect starts from nothing.
        if (options.clientId !== undefined) connection.send(request(PacketType.SET_CLIENT_ID, [options.clientId]))
        for (const f of functions) {
          connection.send(
            f.timeout === undefined
              ? request(PacketType.CAN_DO, [f.name])
              : request(PacketType.CAN_DO_TIMEOUT, [f.name, String(Math.max(1, Math.round(Duration.toMillis(f.timeout))))])
          )
        }
        yield* watchdog(connection, {
          timeout: options.heartbeat ?? "30 seconds",
          awaiting: () => grab !== undefined || echoPending,
          ping: () => {
            echoPending = true
            connection.send(request(PacketType.ECHO_REQ, ["ping"]))
          }
        })
        const grabOnce = Effect.gen(function* () {
          const deferred = yield* Deferred.make<Packet>()
          grab = deferred
          if (!connection.send(request(PacketType.GRAB_JOB_UNIQ))) return undefined
          return yield* Deferred.await(deferred)
        })
        const step = Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            yield* restore(permits.take(1))
            if (stopping) {
              yield* permits.release(1)
              return "stop" as const
            }
            const reply = yield* restore(grabOnce).pipe(Effect.onInterrupt(() => permits.release(1)))
            if (reply && reply.type !== PacketType.NO_JOB) {
              // Forked from an uninterruptible region: make the job itself interruptible again.
              const fiber = yield* FiberSet.run(jobs, Effect.interruptible(runJob(connection, reply)).pipe(Effect.ensuring(permits.release(1))))
              return fiber
            }
            yield* permits.release(1)
            return reply ? ("idle" as const) : ("closed" as const)
          })
        )
        const sleep = Effect.gen(function* () {
          const deferred = yield* Deferred.make<void>()
          wake = deferred
          connection.send(request(PacketType.PRE_SLEEP))
          yield* Deferred.await(deferred).pipe(Effect.timeoutOption(pollInterval))
          wake = undefined
        })
        const loop: Effect.Effect<void, never, R> = Effect.gen(function* () {
          for (;;) {
            const outcome = yield* step
            // The job runs in the worker's job set (a stop lets it finish); this connection
            // grabs again only once it is done.
            if (typeof outcome !== "string") {
              yield* Fiber.await(outcome)
              continue
            }
            if (outcome === "stop" || outcome === "closed") return
            if (outcome === "idle") {
              if (stopping) return
              yield* sleep
            }
          }
        })
        yield* Effect.forkScoped(loop)
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
      Effect.gen(function* () {
        stopping = true
        // Finalizers run uninterruptibly: the wait must be made interruptible for the timeout to cut it.
        const drained = yield* Effect.interruptible(FiberSet.awaitEmpty(jobs)).pipe(Effect.timeoutOption(options.shutdownTimeout ?? "30 seconds"))
        if (Option.isNone(drained)) yield* Effect.logWarning("gearman worker stop: interrupting jobs still running")
        yield* Scope.close(jobScope, Exit.void)
      })
    )
  })
