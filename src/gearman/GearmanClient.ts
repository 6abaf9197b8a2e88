// The Gearman client: foreground and background submissions on every configured server.
// A job with a unique id goes to the server its hash picks (so coalescing works across a
// farm, as Perl's Gearman::Client does); other jobs are spread round-robin; a server that is
// down, or dies before JOB_CREATED, is skipped for the next one.
import { crc32 } from "../crc32.js"
import type { Schedule, Scope } from "effect"
import { Deferred, Duration, Effect, Either, Exit, Fiber, MetricLabel, Queue, Runtime } from "effect"
import { keepConnected, watchdog, type Connection, type ServerSlot, type Transport } from "./connection.js"
import {
  GearmanConnectionError,
  GearmanInvalidArgument,
  GearmanJobException,
  GearmanJobFailed,
  GearmanJobTimeout,
  GearmanNoServerAvailable,
  GearmanServerError,
  type GearmanSubmitError
} from "./errors.js"
import { jobsSubmitted } from "./metrics.js"
import {
  checkedRequest,
  DEFAULT_MAX_FRAME,
  functionNameProblem,
  PacketType,
  request,
  type Packet
} from "../protocol/gearman.js"

export type Priority = "high" | "normal" | "low"
export type Payload = Uint8Array | string

/** Where a job lives: handles are only meaningful on the server that issued them. */
export interface GearmanJobHandle {
  readonly server: string
  readonly handle: string
}

export type JobEvent =
  | { readonly _tag: "Data"; readonly data: Buffer }
  | { readonly _tag: "Warning"; readonly data: Buffer }
  | { readonly _tag: "Status"; readonly numerator: string; readonly denominator: string }

export interface JobResult {
  readonly handle: GearmanJobHandle
  /** WORK_COMPLETE's payload. */
  readonly data: Buffer
  /**
   * Every WORK_DATA payload, in order, up to `maxFrame` bytes of WORK_DATA and WORK_WARNING
   * together (a worker streaming without end must not exhaust the client; `onEvent` sees all).
   */
  readonly chunks: ReadonlyArray<Buffer>
  readonly warnings: ReadonlyArray<Buffer>
  readonly status: { readonly numerator: string; readonly denominator: string } | undefined
}

export interface JobStatus {
  readonly known: boolean
  readonly running: boolean
  readonly numerator: string
  readonly denominator: string
}

export interface SubmitOptions {
  /** Gearman unique id: jobs with the same function and unique coalesce. At most 64 bytes. */
  readonly unique?: string
  readonly priority?: Priority
  /** Called once the server has accepted the job (JOB_CREATED), with its handle. */
  readonly onCreated?: (handle: GearmanJobHandle) => Effect.Effect<void>
  /** Called for each WORK_DATA / WORK_WARNING / WORK_STATUS as it arrives. */
  readonly onEvent?: (event: JobEvent) => Effect.Effect<void>
  /**
   * Give up waiting after this long (the job itself is not cancelled) with GearmanJobTimeout.
   * Checked by one timer per client, to within a tenth of the timeout (at most a second late);
   * with `onCreated` / `onEvent`, whose effects run in the caller's fiber, by Effect.timeout.
   */
  readonly timeout?: Duration.DurationInput
}

export interface BackgroundOptions {
  readonly unique?: string
  readonly priority?: Priority
}

export interface ClientOptions {
  readonly servers: ReadonlyArray<string>
  readonly transport: Transport
  readonly reconnect?: Schedule.Schedule<unknown>
  /** Ask for WORK_EXCEPTION packets (else gearmand turns them into WORK_FAIL). Default true. */
  readonly exceptions?: boolean
  readonly clientId?: string
  /** Largest frame accepted; also the WORK_DATA / WORK_WARNING bytes a result keeps. Default 64 MiB. */
  readonly maxFrame?: number
  /** A request unanswered this long with nothing received drops the connection. Default 30 s. */
  readonly heartbeat?: Duration.DurationInput
}

/** One job of `submitBackgroundAll`. */
export interface BackgroundSubmission {
  readonly fn: string
  readonly payload: Payload
  readonly options?: BackgroundOptions | undefined
}

export type BackgroundSubmitError =
  | GearmanInvalidArgument
  | GearmanConnectionError
  | GearmanNoServerAvailable
  | GearmanServerError

export interface Client {
  readonly submit: (
    fn: string,
    payload: Payload,
    options?: SubmitOptions
  ) => Effect.Effect<JobResult, GearmanSubmitError>
  readonly submitBackground: (
    fn: string,
    payload: Payload,
    options?: BackgroundOptions
  ) => Effect.Effect<GearmanJobHandle, BackgroundSubmitError>
  /**
   * Queues many background jobs at once (pipelined, as one batch of writes) and waits for every
   * answer: per job, in order, its handle or why it was not queued. Never fails as a whole.
   */
  readonly submitBackgroundAll: (
    submissions: ReadonlyArray<BackgroundSubmission>
  ) => Effect.Effect<ReadonlyArray<Either.Either<GearmanJobHandle, BackgroundSubmitError>>>
  readonly getStatus: (
    handle: GearmanJobHandle
  ) => Effect.Effect<JobStatus, GearmanConnectionError | GearmanServerError>
  /** Servers currently connected. */
  readonly upServers: () => ReadonlyArray<string>
  /**
   * The number of the connection to `server` that is up now (a new one after every reconnect),
   * undefined while it is down: a job accepted on a connection that has since broken was lost
   * with it if the server died.
   */
  readonly connectionId: (server: string) => number | undefined
  /**
   * Calls `listener` (synchronously, as the connection is torn down) whenever a connection that
   * was up is lost, with its server and number; returns what unsubscribes it.
   */
  readonly onConnectionLost: (listener: (server: string, id: number) => void) => () => void
}

type Outcome =
  | JobEvent
  | { readonly _tag: "Complete"; readonly data: Buffer }
  | { readonly _tag: "Fail" }
  | { readonly _tag: "Exception"; readonly data: Buffer }
  | { readonly _tag: "Lost"; readonly error: GearmanConnectionError }

type Terminal = Extract<Outcome, { readonly _tag: "Complete" | "Fail" | "Exception" | "Lost" }>

interface Waiter {
  readonly fn: string
  readonly chunks: Array<Buffer>
  readonly warnings: Array<Buffer>
  /** Bytes of chunks and warnings kept; past the client's bound, more are dropped. */
  kept: number
  status: JobResult["status"]
  /** Called once, with how the job ended. */
  readonly done: (terminal: Terminal) => void
  /** Only when the caller wants events as they come (a Queue per job costs). */
  readonly events: Queue.Queue<Outcome> | undefined
  state: ConnState | undefined
  handle: string | undefined
  /** The submitter is gone (interrupted before JOB_CREATED): nothing to register. */
  detached: boolean
}

const deliver = (waiter: Waiter, outcome: Outcome, maxKept: number): void => {
  switch (outcome._tag) {
    case "Data":
    case "Warning":
      if (waiter.kept + outcome.data.length <= maxKept) {
        waiter.kept += outcome.data.length
        ;(outcome._tag === "Data" ? waiter.chunks : waiter.warnings).push(outcome.data)
      }
      break
    case "Status":
      waiter.status = { numerator: outcome.numerator, denominator: outcome.denominator }
      break
    default:
      waiter.done(outcome)
  }
  waiter.events?.unsafeOffer(outcome)
}

type ReplyError = GearmanServerError | GearmanConnectionError

// Replies settle plain callbacks, not Deferreds: a submission is one Effect.async, resumed from
// the packet handler (a Deferred and an Effect per reply measured as a large part of a job's CPU).
type Reply =
  | {
    readonly kind: "created"
    readonly waiter: Waiter | undefined
    readonly ok: (handle: string) => void
    readonly fail: (e: ReplyError) => void
  }
  | { readonly kind: "status"; readonly ok: (status: JobStatus) => void; readonly fail: (e: ReplyError) => void }
  | { readonly kind: "option"; readonly ok: (value: void) => void; readonly fail: (e: ReplyError) => void }
  | { readonly kind: "echo" }

const failReply = (reply: Reply, error: ReplyError): void => {
  if (reply.kind !== "echo") reply.fail(error)
}

const terminalExit = (
  handle: GearmanJobHandle,
  terminal: Terminal,
  waiter: Waiter
): Exit.Exit<JobResult, GearmanSubmitError> => {
  switch (terminal._tag) {
    case "Complete":
      return Exit.succeed({
        handle,
        data: terminal.data,
        chunks: waiter.chunks,
        warnings: waiter.warnings,
        status: waiter.status
      })
    case "Fail":
      return Exit.fail(new GearmanJobFailed({ handle: handle.handle, functionName: waiter.fn }))
    case "Exception":
      return Exit.fail(new GearmanJobException({ handle: handle.handle, functionName: waiter.fn, data: terminal.data }))
    case "Lost":
      return Exit.fail(terminal.error)
  }
}

interface ConnState {
  /** Numbers the connections of one client: told apart across reconnects. */
  readonly id: number
  readonly connection: Connection
  readonly replies: Array<Reply>
  readonly jobs: Map<string, Array<Waiter>>
  dead: GearmanConnectionError | undefined
}

const submitType = {
  fg: { high: PacketType.SUBMIT_JOB_HIGH, normal: PacketType.SUBMIT_JOB, low: PacketType.SUBMIT_JOB_LOW },
  bg: { high: PacketType.SUBMIT_JOB_HIGH_BG, normal: PacketType.SUBMIT_JOB_BG, low: PacketType.SUBMIT_JOB_LOW_BG }
} as const

/** Perl Gearman::Client's server pick for a unique: `((crc32 >> 16) & 0x7fff) % n`. */
export const serverIndexForUnique = (unique: string | Uint8Array, servers: number): number =>
  ((crc32(unique) >>> 16) & 0x7fff) % servers

/**
 * A submission's packet: refused (nothing sent) for a function name with whitespace or control
 * characters, or a NUL in the unique.
 */
const submitPacket = (
  type: PacketType,
  fn: string,
  unique: string,
  payload: Payload
): Either.Either<Buffer, GearmanInvalidArgument> => {
  const problem = functionNameProblem(fn)
  return problem !== undefined
    ? Either.left(new GearmanInvalidArgument({ message: problem }))
    : checkedRequest(type, [fn, unique, payload])
}

/** What picks the server: the unique, or the payload for "-" (coalesce by payload); none for "". */
const routeKey = (unique: string, payload: Payload): string | Uint8Array | undefined =>
  unique === "" ? undefined : unique === "-" ? (payload.length === 0 ? undefined : payload) : unique

const str = (b: Buffer | undefined) => (b === undefined ? "" : b.toString("utf8"))
const foregroundTag = [MetricLabel.make("mode", "foreground")]
const backgroundTag = [MetricLabel.make("mode", "background")]

export const make = (options: ClientOptions): Effect.Effect<Client, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const log = (message: string, ...rest: ReadonlyArray<unknown>) =>
      Runtime.runFork(runtime)(Effect.logWarning(message, ...rest))
    const debug = (message: string, ...rest: ReadonlyArray<unknown>) =>
      Runtime.runFork(runtime)(Effect.logDebug(message, ...rest))

    // Submit timeouts: one sweeping fiber on the Clock while any is pending (a fiber and a
    // timer per submit, as Effect.timeout makes them, cost a tenth of a Controller's job).
    const clock = yield* Effect.clock
    const deadlines = new Set<{ readonly at: number; readonly fire: () => void }>()
    let sweepMs = 1000
    let sweeper: Fiber.RuntimeFiber<void> | undefined
    const sweep: Effect.Effect<void> = Effect.gen(function*() {
      while (deadlines.size > 0) {
        yield* Effect.sleep(Duration.millis(sweepMs))
        const now = clock.unsafeCurrentTimeMillis()
        for (const d of deadlines) {
          if (d.at <= now) {
            deadlines.delete(d)
            d.fire()
          }
        }
      }
      sweeper = undefined
      sweepMs = 1000
    })
    const addDeadline = (timeoutMs: number, fire: () => void) => {
      const deadline = { at: clock.unsafeCurrentTimeMillis() + timeoutMs, fire }
      deadlines.add(deadline)
      sweepMs = Math.min(sweepMs, Math.max(10, Math.round(timeoutMs / 10)))
      if (sweeper === undefined) sweeper = Runtime.runFork(runtime)(sweep)
      return () => void deadlines.delete(deadline)
    }
    yield* Effect.addFinalizer(() => (sweeper === undefined ? Effect.void : Fiber.interrupt(sweeper)))
    const servers = options.servers
    const maxKept = options.maxFrame ?? DEFAULT_MAX_FRAME
    const states: Array<ConnState | undefined> = servers.map(() => undefined)
    let connections = 0
    const lostListeners = new Set<(server: string, id: number) => void>()
    let roundRobin = Math.floor(Math.random() * Math.max(1, servers.length))

    const onPacket = (state: ConnState) => (packet: Packet) => {
      const T = PacketType
      switch (packet.type) {
        case T.JOB_CREATED:
        case T.STATUS_RES:
        case T.OPTION_RES:
        case T.ECHO_RES:
        case T.ERROR: {
          const reply = state.replies.shift()
          if (!reply) return log("gearman reply without a request", packet.type)
          if (packet.type === T.ERROR) {
            const error = new GearmanServerError({
              server: state.connection.server,
              code: str(packet.args[0]),
              text: str(packet.args[1])
            })
            return failReply(reply, error)
          }
          if (reply.kind === "created" && packet.type === T.JOB_CREATED) {
            const handle = str(packet.args[0])
            // Registered before the submitter resumes, so no WORK_* packet can slip past it.
            if (reply.waiter && !reply.waiter.detached) {
              reply.waiter.state = state
              reply.waiter.handle = handle
              const list = state.jobs.get(handle)
              if (list) list.push(reply.waiter)
              else state.jobs.set(handle, [reply.waiter])
            }
            jobsSubmitted.unsafeUpdate(1, reply.waiter ? foregroundTag : backgroundTag)
            return reply.ok(handle)
          }
          if (reply.kind === "status" && packet.type === T.STATUS_RES) {
            const [, known, running, numerator, denominator] = packet.args.map(str)
            return reply.ok({
              known: known === "1",
              running: running === "1",
              numerator: numerator ?? "0",
              denominator: denominator ?? "0"
            })
          }
          if (reply.kind === "option" && packet.type === T.OPTION_RES) return reply.ok(undefined)
          if (reply.kind === "echo" && packet.type === T.ECHO_RES) return
          // Replies out of step with requests: the stream cannot be trusted any more.
          log("gearman reply does not match its request", packet.type, reply.kind)
          const error = new GearmanServerError({
            server: state.connection.server,
            code: "PROTOCOL",
            text: `unexpected packet ${packet.type}`
          })
          return failReply(reply, error)
        }
        case T.WORK_DATA:
        case T.WORK_WARNING:
        case T.WORK_STATUS:
        case T.WORK_COMPLETE:
        case T.WORK_FAIL:
        case T.WORK_EXCEPTION: {
          const handle = str(packet.args[0])
          const waiters = state.jobs.get(handle)
          if (!waiters) return
          const outcome: Outcome = packet.type === T.WORK_DATA
            ? { _tag: "Data", data: packet.args[1]! }
            : packet.type === T.WORK_WARNING
            ? { _tag: "Warning", data: packet.args[1]! }
            : packet.type === T.WORK_STATUS
            ? { _tag: "Status", numerator: str(packet.args[1]), denominator: str(packet.args[2]) }
            : packet.type === T.WORK_COMPLETE
            ? { _tag: "Complete", data: packet.args[1]! }
            : packet.type === T.WORK_EXCEPTION
            ? { _tag: "Exception", data: packet.args[1]! }
            : { _tag: "Fail" }
          if (outcome._tag === "Complete" || outcome._tag === "Fail" || outcome._tag === "Exception")
            state.jobs.delete(handle)
          for (const waiter of waiters)
            deliver(waiter, outcome, maxKept)
          return
        }
        default:
          return log("gearman client got an unexpected packet", packet.type)
      }
    }

    const onConnect = (index: number) => (connection: Connection) =>
      Effect.gen(function*() {
        const state: ConnState = { id: ++connections, connection, replies: [], jobs: new Map(), dead: undefined }
        connection.setHandler(onPacket(state))
        if (options.clientId !== undefined) connection.send(request(PacketType.SET_CLIENT_ID, [options.clientId]))
        if (options.exceptions ?? true) {
          // Nobody waits for the answer; a refusal is logged.
          state.replies.push({
            kind: "option",
            ok: () => {},
            fail: (e) =>
              void (e._tag === "GearmanServerError" && log("gearman server refused OPTION_REQ exceptions", e.message))
          })
          connection.send(request(PacketType.OPTION_REQ, ["exceptions"]))
        }
        states[index] = state
        yield* watchdog(connection, {
          timeout: options.heartbeat ?? "30 seconds",
          awaiting: () => state.replies.length > 0,
          ping: () => {
            state.replies.push({ kind: "echo" })
            connection.send(request(PacketType.ECHO_REQ, ["ping"]))
          }
        })
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            if (states[index] === state) states[index] = undefined
            const error = yield* Deferred.poll(connection.closed).pipe(
              Effect.flatMap((closed) =>
                closed._tag === "Some"
                  ? closed.value
                  : Effect.succeed(
                    new GearmanConnectionError({ server: connection.server, message: "connection closed" })
                  )
              )
            )
            state.dead = error
            // Requests without an answer yet may be retried elsewhere; jobs already created fail.
            for (const reply of state.replies.splice(0)) failReply(reply, error)
            for (const waiters of state.jobs.values())
              for (const w of waiters)
                deliver(w, { _tag: "Lost", error }, maxKept)
            state.jobs.clear()
            for (const listener of lostListeners) listener(connection.server, state.id)
          })
        )
      })

    const slots: ReadonlyArray<ServerSlot> = yield* Effect.forEach(servers, (server, index) =>
      keepConnected({
        transport: options.transport,
        server,
        ...(options.reconnect ? { reconnect: options.reconnect } : {}),
        ...(options.maxFrame ? { maxFrame: options.maxFrame } : {}),
        onConnect: onConnect(index)
      }).pipe(Effect.annotateLogs({ role: "gearman-client" })))
    // Callers can submit at once: every server has had its first chance to connect.
    yield* Effect.forEach(slots, (slot) => Deferred.await(slot.firstAttempt), { discard: true })

    /** Queues `reply` for a request and sends it; if the connection is closed, takes it back and says so. */
    const sendRequest = (state: ConnState, bytes: Buffer, reply: Reply): GearmanConnectionError | undefined => {
      state.replies.push(reply)
      if (state.connection.send(bytes)) return undefined
      const at = state.replies.indexOf(reply)
      if (at >= 0) state.replies.splice(at, 1)
      return new GearmanConnectionError({
        server: state.connection.server,
        message: `connection to ${state.connection.server} is closed`
      })
    }

    /** Sends a request on one connection and waits for its reply. */
    const ask = <A>(
      state: ConnState,
      bytes: Buffer,
      makeReply: (ok: (a: A) => void, fail: (e: ReplyError) => void) => Reply
    ): Effect.Effect<A, ReplyError> =>
      Effect.async<A, ReplyError>((resume) => {
        if (state.dead) return resume(Exit.fail(state.dead))
        const closed = sendRequest(state, bytes, makeReply((a) => resume(Exit.succeed(a)), (e) => resume(Exit.fail(e))))
        if (closed) resume(Exit.fail(closed))
      })

    /**
     * Sends a submission to the servers in order from the key's (or the next round-robin) one,
     * skipping those down or lost before JOB_CREATED; calls exactly one of `ok` / `fail`.
     */
    const create = (
      fn: string,
      bytes: Buffer,
      key: string | Uint8Array | undefined,
      waiter: Waiter | undefined,
      ok: (handle: GearmanJobHandle) => void,
      fail: (error: GearmanNoServerAvailable | GearmanServerError) => void
    ): void => {
      const n = servers.length
      const start = key !== undefined ? serverIndexForUnique(key, n) : roundRobin++ % n
      let tried = 0
      let lastError: GearmanConnectionError | undefined
      const next = (): void => {
        while (tried < n) {
          const state = states[(start + tried++) % n]
          if (!state || state.dead) continue
          const reply: Reply = {
            kind: "created",
            waiter,
            ok: (handle) => ok({ server: state.connection.server, handle }),
            fail: (error) => {
              if (error._tag === "GearmanServerError") return fail(error)
              lastError = error
              debug("gearman submit moves to the next server", error.message)
              next()
            }
          }
          const closed = sendRequest(state, bytes, reply)
          if (!closed) return
          lastError = closed
        }
        fail(
          new GearmanNoServerAvailable({
            servers,
            message: `no Gearman server could take a ${fn} job${lastError ? `: ${lastError.message}` : ""}`,
            cause: lastError
          })
        )
      }
      next()
    }

    const detach = (waiter: Waiter) => {
      waiter.detached = true
      if (!waiter.state || waiter.handle === undefined) return
      const list = waiter.state.jobs.get(waiter.handle)
      if (!list) return
      const rest = list.filter((w) => w !== waiter)
      if (rest.length === 0) waiter.state.jobs.delete(waiter.handle)
      else waiter.state.jobs.set(waiter.handle, rest)
    }

    const newWaiter = (
      fn: string,
      done: (terminal: Terminal) => void,
      events: Queue.Queue<Outcome> | undefined
    ): Waiter => ({
      fn,
      chunks: [],
      warnings: [],
      kept: 0,
      status: undefined,
      done,
      events,
      state: undefined,
      handle: undefined,
      detached: false
    })

    /** The common case, no callbacks: one Effect.async from submission to the job's end. */
    const submitPlain = (
      fn: string,
      bytes: Buffer,
      key: string | Uint8Array | undefined,
      timeoutMs: number | undefined
    ): Effect.Effect<JobResult, GearmanSubmitError> =>
      Effect.async<JobResult, GearmanSubmitError>((resume) => {
        let handle: GearmanJobHandle | undefined
        let settled = false
        let cancelTimeout: (() => void) | undefined
        const finish = (exit: Exit.Exit<JobResult, GearmanSubmitError>) => {
          if (settled) return
          settled = true
          cancelTimeout?.()
          resume(exit)
        }
        const waiter = newWaiter(fn, (terminal) => finish(terminalExit(handle!, terminal, waiter)), undefined)
        if (timeoutMs !== undefined) {
          cancelTimeout = addDeadline(timeoutMs, () => {
            detach(waiter)
            finish(Exit.fail(new GearmanJobTimeout({ handle: handle?.handle ?? "", functionName: fn, timeoutMs })))
          })
        }
        create(fn, bytes, key, waiter, (h) => void (handle = h), (e) => finish(Exit.fail(e)))
        // Interrupted: stop listening (a job already queued still runs).
        return Effect.sync(() => {
          settled = true
          cancelTimeout?.()
          detach(waiter)
        })
      })

    /** With `onCreated` / `onEvent`: the caller's effects run in its own fiber, in order. */
    const submitObserved = (
      fn: string,
      bytes: Buffer,
      key: string | Uint8Array | undefined,
      submitOptions: SubmitOptions
    ) =>
      Effect.gen(function*() {
        const onEvent = submitOptions.onEvent
        const done = yield* Deferred.make<Terminal>()
        const events = onEvent ? yield* Queue.unbounded<Outcome>() : undefined
        const waiter = newWaiter(fn, (terminal) => Deferred.unsafeDone(done, Exit.succeed(terminal)), events)
        return yield* Effect.gen(function*() {
          const handle = yield* Effect.async<GearmanJobHandle, GearmanNoServerAvailable | GearmanServerError>((
            resume
          ) => create(fn, bytes, key, waiter, (h) => resume(Exit.succeed(h)), (e) => resume(Exit.fail(e))))
          if (submitOptions.onCreated) yield* submitOptions.onCreated(handle)
          let terminal: Terminal | undefined
          if (onEvent && events) {
            while (terminal === undefined) {
              const outcome = yield* Queue.take(events)
              if (outcome._tag === "Data" || outcome._tag === "Warning" || outcome._tag === "Status")
                yield* onEvent(outcome)
              else terminal = outcome
            }
          } else terminal = yield* Deferred.await(done)
          return yield* terminalExit(handle, terminal, waiter)
        }).pipe(Effect.ensuring(Effect.sync(() => detach(waiter))))
      })

    // Hot paths are untraced: a span per call measured at half the submit throughput.
    const submit = (
      fn: string,
      payload: Payload,
      submitOptions: SubmitOptions = {}
    ): Effect.Effect<JobResult, GearmanSubmitError> => {
      const unique = submitOptions.unique ?? ""
      const packet = submitPacket(submitType.fg[submitOptions.priority ?? "normal"], fn, unique, payload)
      if (Either.isLeft(packet)) return Effect.fail(packet.left)
      const bytes = packet.right
      const key = routeKey(unique, payload)
      const timeoutMs = submitOptions.timeout === undefined
        ? undefined
        : Duration.toMillis(Duration.decode(submitOptions.timeout))
      if (submitOptions.onCreated || submitOptions.onEvent) {
        const observed = submitObserved(fn, bytes, key, submitOptions)
        return timeoutMs === undefined || !Number.isFinite(timeoutMs)
          ? observed
          : Effect.timeoutFail(observed, {
            duration: Duration.millis(timeoutMs),
            onTimeout: () => new GearmanJobTimeout({ handle: "", functionName: fn, timeoutMs })
          })
      }
      return submitPlain(fn, bytes, key, timeoutMs === undefined || !Number.isFinite(timeoutMs) ? undefined : timeoutMs)
    }

    const createBackground = (
      fn: string,
      payload: Payload,
      bgOptions: BackgroundOptions,
      ok: (handle: GearmanJobHandle) => void,
      fail: (error: GearmanInvalidArgument | GearmanNoServerAvailable | GearmanServerError) => void
    ): void => {
      const unique = bgOptions.unique ?? ""
      const packet = submitPacket(submitType.bg[bgOptions.priority ?? "normal"], fn, unique, payload)
      if (Either.isLeft(packet)) return fail(packet.left)
      create(fn, packet.right, routeKey(unique, payload), undefined, ok, fail)
    }

    const submitBackground = (
      fn: string,
      payload: Payload,
      bgOptions: BackgroundOptions = {}
    ): Effect.Effect<GearmanJobHandle, BackgroundSubmitError> =>
      Effect.async((resume) =>
        createBackground(fn, payload, bgOptions, (h) => resume(Exit.succeed(h)), (e) => resume(Exit.fail(e)))
      )

    // One Effect for the whole batch: no fiber per job (the QueueRunner sends up to a thousand).
    const submitBackgroundAll = (
      submissions: ReadonlyArray<BackgroundSubmission>
    ): Effect.Effect<ReadonlyArray<Either.Either<GearmanJobHandle, BackgroundSubmitError>>> =>
      submissions.length === 0
        ? Effect.succeed([])
        : Effect.async((resume) => {
          const results = new Array<Either.Either<GearmanJobHandle, BackgroundSubmitError>>(submissions.length)
          let pending = submissions.length
          const settle = (i: number, result: Either.Either<GearmanJobHandle, BackgroundSubmitError>) => {
            results[i] = result
            if (--pending === 0) resume(Exit.succeed(results))
          }
          submissions.forEach((sub, i) =>
            createBackground(
              sub.fn,
              sub.payload,
              sub.options ?? {},
              (h) => settle(i, Either.right(h)),
              (e) => settle(i, Either.left(e))
            )
          )
        })

    const getStatus = Effect.fn("Gearman.getStatus")(function*(handle: GearmanJobHandle) {
      const index = servers.indexOf(handle.server)
      const state = index >= 0 ? states[index] : undefined
      if (!state)
        return yield* Effect.fail(
          new GearmanConnectionError({ server: handle.server, message: `not connected to ${handle.server}` })
        )
      return yield* ask<JobStatus>(
        state,
        request(PacketType.GET_STATUS, [handle.handle]),
        (ok, fail) => ({ kind: "status", ok, fail })
      )
    })

    return {
      submit,
      submitBackground,
      submitBackgroundAll,
      getStatus,
      upServers: () => states.flatMap((s) => (s && !s.dead ? [s.connection.server] : [])),
      connectionId: (server) => {
        const state = states[servers.indexOf(server)]
        return state !== undefined && state.dead === undefined ? state.id : undefined
      },
      onConnectionLost: (listener) => {
        lostListeners.add(listener)
        return () => void lostListeners.delete(listener)
      }
    }
  })
