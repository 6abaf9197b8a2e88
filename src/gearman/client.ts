// The Gearman client: foreground and background submissions on every configured server.
// A job with a unique id goes to the server its hash picks (so coalescing works across a
// farm, as Perl's Gearman::Client does); other jobs are spread round-robin; a server that is
// down, or dies before JOB_CREATED, is skipped for the next one.
import { crc32 } from "../crc32.js"
import { Deferred, Duration, Effect, Exit, MetricLabel, Queue, Runtime, Schedule, Scope } from "effect"
import { keepConnected, watchdog, type Connection, type ServerSlot, type Transport } from "./connection.js"
import {
  GearmanConnectionError,
  GearmanJobException,
  GearmanJobFailed,
  GearmanNoServerAvailable,
  GearmanServerError,
  type GearmanSubmitError
} from "./errors.js"
import { jobsSubmitted } from "./metrics.js"
import { PacketType, request, type Packet } from "./protocol.js"

export type Priority = "high" | "normal" | "low"
export type Payload = Uint8Array | string

/** Where a job lives: handles are only meaningful on the server that issued them. */
export interface JobHandle {
  readonly server: string
  readonly handle: string
}

export type JobEvent =
  | { readonly _tag: "Data"; readonly data: Buffer }
  | { readonly _tag: "Warning"; readonly data: Buffer }
  | { readonly _tag: "Status"; readonly numerator: string; readonly denominator: string }

export interface JobResult {
  readonly handle: JobHandle
  /** WORK_COMPLETE's payload. */
  readonly data: Buffer
  /** Every WORK_DATA payload, in order. */
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
  readonly onCreated?: (handle: JobHandle) => Effect.Effect<void>
  /** Called for each WORK_DATA / WORK_WARNING / WORK_STATUS as it arrives. */
  readonly onEvent?: (event: JobEvent) => Effect.Effect<void>
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
  readonly maxFrame?: number
  /** A request unanswered this long with nothing received drops the connection. Default 30 s. */
  readonly heartbeat?: Duration.DurationInput
}

export interface Client {
  readonly submit: (fn: string, payload: Payload, options?: SubmitOptions) => Effect.Effect<JobResult, GearmanSubmitError>
  readonly submitBackground: (
    fn: string,
    payload: Payload,
    options?: BackgroundOptions
  ) => Effect.Effect<JobHandle, GearmanConnectionError | GearmanNoServerAvailable | GearmanServerError>
  readonly getStatus: (handle: JobHandle) => Effect.Effect<JobStatus, GearmanConnectionError | GearmanServerError>
  /** Servers currently connected. */
  readonly upServers: () => ReadonlyArray<string>
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
  status: JobResult["status"]
  readonly done: Deferred.Deferred<Terminal>
  /** Only when the caller wants events as they come (a Queue per job costs). */
  readonly events: Queue.Queue<Outcome> | undefined
  state: ConnState | undefined
  handle: string | undefined
  /** The submitter is gone (interrupted before JOB_CREATED): nothing to register. */
  detached: boolean
}

const deliver = (waiter: Waiter, outcome: Outcome): void => {
  switch (outcome._tag) {
    case "Data":
      waiter.chunks.push(outcome.data)
      break
    case "Warning":
      waiter.warnings.push(outcome.data)
      break
    case "Status":
      waiter.status = { numerator: outcome.numerator, denominator: outcome.denominator }
      break
    default:
      Deferred.unsafeDone(waiter.done, Exit.succeed(outcome))
  }
  waiter.events?.unsafeOffer(outcome)
}

type ReplyError = GearmanServerError | GearmanConnectionError

type Reply =
  | { readonly kind: "created"; readonly deferred: Deferred.Deferred<string, ReplyError>; readonly waiter: Waiter | undefined }
  | { readonly kind: "status"; readonly deferred: Deferred.Deferred<JobStatus, ReplyError> }
  | { readonly kind: "option"; readonly deferred: Deferred.Deferred<void, ReplyError> }
  | { readonly kind: "echo" }

const failReply = (reply: Reply, error: ReplyError): void => {
  switch (reply.kind) {
    case "created":
      return Deferred.unsafeDone(reply.deferred, Exit.fail(error))
    case "status":
      return Deferred.unsafeDone(reply.deferred, Exit.fail(error))
    case "option":
      return Deferred.unsafeDone(reply.deferred, Exit.fail(error))
    case "echo":
      return
  }
}

interface ConnState {
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

/** What picks the server: the unique, or the payload for "-" (coalesce by payload); none for "". */
const routeKey = (unique: string, payload: Payload): string | Uint8Array | undefined =>
  unique === "" ? undefined : unique === "-" ? (payload.length === 0 ? undefined : payload) : unique

const str = (b: Buffer | undefined) => (b === undefined ? "" : b.toString("utf8"))
const foregroundTag = [MetricLabel.make("mode", "foreground")]
const backgroundTag = [MetricLabel.make("mode", "background")]

export const make = (options: ClientOptions): Effect.Effect<Client, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const log = (message: string, ...rest: ReadonlyArray<unknown>) => Runtime.runFork(runtime)(Effect.logWarning(message, ...rest))
    const servers = options.servers
    const states: Array<ConnState | undefined> = servers.map(() => undefined)
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
            const error = new GearmanServerError({ server: state.connection.server, code: str(packet.args[0]), text: str(packet.args[1]) })
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
            return Deferred.unsafeDone(reply.deferred, Exit.succeed(handle))
          }
          if (reply.kind === "status" && packet.type === T.STATUS_RES) {
            const [, known, running, numerator, denominator] = packet.args.map(str)
            return Deferred.unsafeDone(
              reply.deferred,
              Exit.succeed({ known: known === "1", running: running === "1", numerator: numerator ?? "0", denominator: denominator ?? "0" })
            )
          }
          if (reply.kind === "option" && packet.type === T.OPTION_RES) return Deferred.unsafeDone(reply.deferred, Exit.void)
          if (reply.kind === "echo" && packet.type === T.ECHO_RES) return
          // Replies out of step with requests: the stream cannot be trusted any more.
          log("gearman reply does not match its request", packet.type, reply.kind)
          const error = new GearmanServerError({ server: state.connection.server, code: "PROTOCOL", text: `unexpected packet ${packet.type}` })
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
          const outcome: Outcome =
            packet.type === T.WORK_DATA
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
          if (outcome._tag === "Complete" || outcome._tag === "Fail" || outcome._tag === "Exception") state.jobs.delete(handle)
          for (const waiter of waiters) deliver(waiter, outcome)
          return
        }
        default:
          return log("gearman client got an unexpected packet", packet.type)
      }
    }

    const onConnect = (index: number) => (connection: Connection) =>
      Effect.gen(function* () {
        const state: ConnState = { connection, replies: [], jobs: new Map(), dead: undefined }
        connection.setHandler(onPacket(state))
        if (options.clientId !== undefined) connection.send(request(PacketType.SET_CLIENT_ID, [options.clientId]))
        if (options.exceptions ?? true) {
          const deferred = yield* Deferred.make<void, ReplyError>()
          state.replies.push({ kind: "option", deferred })
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
          Effect.gen(function* () {
            if (states[index] === state) states[index] = undefined
            const error = yield* Deferred.poll(connection.closed).pipe(
              Effect.flatMap((closed) => closed._tag === "Some" ? closed.value : Effect.succeed(new GearmanConnectionError({ server: connection.server, message: "connection closed" })))
            )
            state.dead = error
            // Requests without an answer yet may be retried elsewhere; jobs already created fail.
            for (const reply of state.replies.splice(0)) failReply(reply, error)
            for (const waiters of state.jobs.values()) for (const w of waiters) deliver(w, { _tag: "Lost", error })
            state.jobs.clear()
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
      }).pipe(Effect.annotateLogs({ role: "gearman-client" }))
    )
    // Callers can submit at once: every server has had its first chance to connect.
    yield* Effect.forEach(slots, (slot) => Deferred.await(slot.firstAttempt), { discard: true })

    /** Sends a request on one connection and waits for its reply. */
    const ask = <A>(
      state: ConnState,
      bytes: Buffer,
      makeReply: (deferred: Deferred.Deferred<A, ReplyError>) => Reply
    ): Effect.Effect<A, ReplyError> =>
      Effect.flatMap(Deferred.make<A, ReplyError>(), (deferred) => {
        if (state.dead) return Effect.fail(state.dead)
        const reply = makeReply(deferred)
        state.replies.push(reply)
        if (!state.connection.send(bytes)) {
          const at = state.replies.indexOf(reply)
          if (at >= 0) state.replies.splice(at, 1)
          return Effect.fail(new GearmanConnectionError({ server: state.connection.server, message: `connection to ${state.connection.server} is closed` }))
        }
        return Deferred.await(deferred)
      })

    /** Tries the servers in order from `start`, skipping those down or lost before JOB_CREATED. */
    const create = (
      fn: string,
      bytes: Buffer,
      key: string | Uint8Array | undefined,
      waiter: Waiter | undefined
    ): Effect.Effect<JobHandle, GearmanNoServerAvailable | GearmanServerError> =>
      Effect.gen(function* () {
        const n = servers.length
        const start = key !== undefined ? serverIndexForUnique(key, n) : roundRobin++ % n
        let lastError: GearmanConnectionError | undefined
        for (let i = 0; i < n; i++) {
          const state = states[(start + i) % n]
          if (!state || state.dead) continue
          const result = yield* Effect.either(
            ask<string>(state, bytes, (deferred) => ({
              kind: "created",
              deferred,
              waiter
            }))
          )
          if (result._tag === "Right") return { server: state.connection.server, handle: result.right }
          if (result.left._tag === "GearmanServerError") return yield* Effect.fail(result.left)
          lastError = result.left
          yield* Effect.logDebug("gearman submit moves to the next server", result.left.message)
        }
        return yield* Effect.fail(
          new GearmanNoServerAvailable({
            servers,
            message: `no Gearman server could take a ${fn} job${lastError ? `: ${lastError.message}` : ""}`
          })
        )
      })

    const detach = (waiter: Waiter) =>
      Effect.sync(() => {
        waiter.detached = true
        if (!waiter.state || waiter.handle === undefined) return
        const list = waiter.state.jobs.get(waiter.handle)
        if (!list) return
        const rest = list.filter((w) => w !== waiter)
        if (rest.length === 0) waiter.state.jobs.delete(waiter.handle)
        else waiter.state.jobs.set(waiter.handle, rest)
      })

    // Hot paths are untraced: a span per call measured at half the submit throughput.
    const submit = Effect.fnUntraced(function* (fn: string, payload: Payload, submitOptions: SubmitOptions = {}) {
      const onEvent = submitOptions.onEvent
      const waiter: Waiter = {
        fn,
        chunks: [],
        warnings: [],
        status: undefined,
        done: yield* Deferred.make<Terminal>(),
        events: onEvent ? yield* Queue.unbounded<Outcome>() : undefined,
        state: undefined,
        handle: undefined,
        detached: false
      }
      const unique = submitOptions.unique ?? ""
      const bytes = request(submitType.fg[submitOptions.priority ?? "normal"], [fn, unique, payload])
      return yield* Effect.gen(function* () {
        const handle = yield* create(fn, bytes, routeKey(unique, payload), waiter)
        if (submitOptions.onCreated) yield* submitOptions.onCreated(handle)
        let terminal: Terminal | undefined
        if (onEvent && waiter.events) {
          while (terminal === undefined) {
            const outcome = yield* Queue.take(waiter.events)
            if (outcome._tag === "Data" || outcome._tag === "Warning" || outcome._tag === "Status") yield* onEvent(outcome)
            else terminal = outcome
          }
        } else terminal = yield* Deferred.await(waiter.done)
        switch (terminal._tag) {
          case "Complete":
            return { handle, data: terminal.data, chunks: waiter.chunks, warnings: waiter.warnings, status: waiter.status } satisfies JobResult
          case "Fail":
            return yield* Effect.fail(new GearmanJobFailed({ handle: handle.handle, functionName: fn }))
          case "Exception":
            return yield* Effect.fail(new GearmanJobException({ handle: handle.handle, functionName: fn, data: terminal.data }))
          case "Lost":
            return yield* Effect.fail(terminal.error)
        }
      }).pipe(Effect.ensuring(detach(waiter)))
    })

    const submitBackground = Effect.fnUntraced(function* (fn: string, payload: Payload, bgOptions: BackgroundOptions = {}) {
      const unique = bgOptions.unique ?? ""
      const bytes = request(submitType.bg[bgOptions.priority ?? "normal"], [fn, unique, payload])
      return yield* create(fn, bytes, routeKey(unique, payload), undefined)
    })

    const getStatus = Effect.fn("Gearman.getStatus")(function* (handle: JobHandle) {
      const index = servers.indexOf(handle.server)
      const state = index >= 0 ? states[index] : undefined
      if (!state) return yield* Effect.fail(new GearmanConnectionError({ server: handle.server, message: `not connected to ${handle.server}` }))
      return yield* ask<JobStatus>(state, request(PacketType.GET_STATUS, [handle.handle]), (deferred) => ({
        kind: "status",
        deferred
      }))
    })

    return {
      submit,
      submitBackground,
      getStatus,
      upServers: () => states.flatMap((s) => (s && !s.dead ? [s.connection.server] : []))
    }
  })
