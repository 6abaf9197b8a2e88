// An in-process job server with gearmand 1.1's semantics, speaking the wire protocol on
// byte streams: the memory layer connects to it, and a TCP listener can serve it as is.
//
// Kept from gearmand: FIFO per function within priority (high, normal, low), a requeued job
// goes to the tail; coalescing by (function, unique) over queued and running jobs ("-" =
// by payload, "" = never); every WORK_* fanned out to all attached foreground clients
// (WORK_EXCEPTION downgraded to WORK_FAIL "HANDLE\0" without the `exceptions` option);
// NOOP once per sleep; a foreground job whose clients all left is dropped when grabbed;
// a worker's jobs are requeued when it vanishes (`jobRetries` > 0 drops after N attempts);
// admin `status` counts queued + running; CAN_DO_TIMEOUT takes a job back (a retry) when its
// worker holds it past the timeout (ASCII ms, floor 1 s).
// Better than gearmand: frames are validated against their size (an ERROR or a close instead
// of a desynchronised stream); queues are bounded in bytes as well as in jobs; a function
// with no jobs, no workers and no admin setting is forgotten (gearmand lists it forever); a
// function name with control characters is refused (it would forge admin lines); the
// CAN_DO_TIMEOUT timer is per job, not per connection, and PRE_SLEEP does not cancel it.
import { isUtf8 } from "node:buffer"
import { Either } from "effect"
import {
  ByteQueue,
  DEFAULT_MAX_FRAME,
  HEADER_SIZE,
  PacketType,
  readHeader,
  response,
  splitArgs,
  type Arg
} from "../protocol/gearman.js"

export interface JobServerOptions {
  readonly handlePrefix?: string
  /** As gearmand's --job-retries: 0 = unlimited, N = drop on the Nth failed attempt. */
  readonly jobRetries?: number
  readonly maxFrame?: number
  /**
   * Queued + running jobs a function may hold before submits get `QUEUE_ERROR Job queue is
   * full` (0 = unlimited). Admin `maxqueue FUNC N` overrides it per function; `maxqueue FUNC`
   * alone goes back to it.
   */
  readonly maxQueue?: number
  /**
   * Bytes (payload + unique + function name) of queued and running jobs a function may hold,
   * and all functions together, before submits get `QUEUE_ERROR Job queue is full` (0 =
   * unlimited). Defaults: `DEFAULT_MAX_QUEUE_BYTES`, `DEFAULT_MAX_TOTAL_BYTES`.
   */
  readonly maxQueueBytes?: number
  readonly maxTotalBytes?: number
  /**
   * Bytes of partly received packets and lines held for all peers together (default
   * `DEFAULT_MAX_INPUT_BYTES`, at least one packet). Past it the peer holding the most is cut off: each peer may hold
   * up to a frame, and without this many peers each sending most of one would hold that many frames.
   */
  readonly maxInputBytes?: number
  /** Functions whose ended jobs `ended()` leaves out (Garivini's own). */
  readonly uncounted?: ReadonlyArray<string>
}

export const DEFAULT_MAX_QUEUE_BYTES = 256 * 1024 * 1024
export const DEFAULT_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
export const DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024
/** Longest admin line; a peer sending a longer one is cut off. */
export const MAX_ADMIN_LINE = 65536
/** CAN_DO_TIMEOUT below this (but above 0) is raised to it, as gearmand does. */
const MIN_TIMEOUT_MS = 1000
/** setTimeout's ceiling; a longer CAN_DO_TIMEOUT waits this long. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1

/** Jobs ended since the server started (for a live summary). */
export interface EndedCounts {
  readonly completed: number
  readonly failed: number
}

/** C0 and C1 control characters and Unicode's line separators: none may reach an admin line. */
const controlChars = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/g
const hasControl = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/

/**
 * A function name the admin text protocol can print on one line, naming one function: UTF-8
 * (two different invalid byte strings would decode to the same name) without control characters.
 */
export const printableName = (name: Buffer): boolean => isUtf8(name) && !hasControl.test(name.toString("utf8"))

type Priority = 0 | 1 | 2 // high, normal, low: gearmand's numbering

interface Job {
  readonly handle: string
  readonly fn: string
  readonly unique: string
  readonly uniqueKey: string | undefined
  readonly data: Buffer
  readonly priority: Priority
  readonly background: boolean
  readonly clients: Array<SessionState>
  worker: SessionState | undefined
  numerator: string
  denominator: string
  retries: number
  ignore: boolean
  /** payload + unique + function name, counted against the byte bounds */
  readonly bytes: number
  /** Cancels the CAN_DO_TIMEOUT timer of the current assignment. */
  cancelTimer: (() => void) | undefined
}

interface FunctionState {
  readonly name: string
  readonly queues: [Array<Job>, Array<Job>, Array<Job>]
  registrations: number
  running: number
  bytes: number
  /** set by admin `maxqueue`; the entry is kept while it is */
  maxQueue: [number, number, number] | undefined
  /** made by admin `create function`: kept until `drop function` */
  created: boolean
  /** registered workers that sent PRE_SLEEP and no GRAB since: the only ones a new job may NOOP */
  readonly sleepers: Set<SessionState>
}

/** One peer of the server (client, worker and admin at once, as in gearmand). */
export interface Session {
  readonly id: number
  readonly address: string
  /** Feeds bytes received from the peer. */
  readonly receive: (bytes: Buffer) => void
  /** The peer went away. */
  readonly disconnect: () => void
}

interface SessionState extends Session {
  readonly write: (bytes: Buffer) => void
  /** cuts the peer off, saying why */
  readonly close: (reason: string) => void
  readonly input: ByteQueue
  /** bytes of `input` counted in the server's `inputBytes` */
  counted: number
  /** bytes of `input` already searched for an admin line's end */
  scanned: number
  /**
   * Registrations per function (gearmand counts duplicates), oldest first: gearmand head-inserts,
   * so a grab looks at the most recent first. Re-registering moves a function to the end.
   */
  readonly functions: Map<string, number>
  /** `functions`, most recent first; rebuilt after a change */
  grabOrder: ReadonlyArray<string> | undefined
  /** CAN_DO_TIMEOUT per function, in ms */
  readonly timeouts: Map<string, number>
  sleeping: boolean
  noopSent: boolean
  exceptions: boolean
  clientId: string
  readonly assigned: Set<Job>
  readonly attached: Set<Job>
  alive: boolean
}

export class JobServer {
  private readonly functions = new Map<string, FunctionState>()
  private readonly jobs = new Map<string, Job>()
  private readonly uniques = new Map<string, Job>()
  /** Jobs by unique alone (GET_STATUS_UNIQUE ignores the function), non-empty uniques only. */
  private readonly byUnique = new Map<string, Set<Job>>()
  private readonly sessions = new Map<number, SessionState>()
  private nextHandle = 1
  private nextSession = 1
  private totalBytes = 0
  /** partly received input of every peer (the sum of their `counted`) */
  private inputBytes = 0
  private completed = 0
  private failed = 0
  private readonly prefix: string
  private readonly jobRetries: number
  private readonly maxFrame: number
  private readonly maxQueue: number
  private readonly maxQueueBytes: number
  private readonly maxTotalBytes: number
  private readonly maxInputBytes: number
  private readonly uncounted: ReadonlySet<string>

  constructor(options: JobServerOptions = {}) {
    this.prefix = options.handlePrefix ?? "H:memory"
    this.jobRetries = options.jobRetries ?? 0
    this.maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME
    this.maxQueue = Math.max(0, options.maxQueue ?? 0)
    this.maxQueueBytes = Math.max(0, options.maxQueueBytes ?? DEFAULT_MAX_QUEUE_BYTES)
    this.maxTotalBytes = Math.max(0, options.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES)
    // One whole packet must always fit, or a large job could never arrive.
    this.maxInputBytes = Math.max(this.maxFrame + HEADER_SIZE, options.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES)
    this.uncounted = new Set(options.uncounted ?? [])
  }

  /** Jobs completed and failed (WORK_FAIL / WORK_EXCEPTION) since the start, `uncounted` left out. */
  ended(): EndedCounts {
    return { completed: this.completed, failed: this.failed }
  }

  /** Bytes of partly received packets and lines held for all peers. */
  get pendingInputBytes(): number {
    return this.inputBytes
  }

  /** Bytes held by queued and running jobs, all functions together. */
  get queuedBytes(): number {
    return this.totalBytes
  }

  /** Accepts a peer. `write` sends it bytes; `close` cuts it off (on a fatal framing error). */
  connect(address: string, write: (bytes: Buffer) => void, close: (reason: string) => void): Session {
    const id = this.nextSession++
    const session: SessionState = {
      id,
      address,
      write,
      close,
      input: new ByteQueue(),
      counted: 0,
      scanned: 0,
      functions: new Map(),
      grabOrder: undefined,
      timeouts: new Map(),
      sleeping: false,
      noopSent: false,
      exceptions: false,
      clientId: "-",
      assigned: new Set(),
      attached: new Set(),
      alive: true,
      receive: (bytes) => this.receive(session, bytes),
      disconnect: () => this.disconnect(session)
    }
    this.sessions.set(id, session)
    return session
  }

  /** Drops every peer, as a server shutting down would. Jobs are forgotten. */
  shutdown(): void {
    for (const session of [...this.sessions.values()]) {
      this.disconnect(session)
      session.close("the server is shutting down")
    }
    for (const job of this.jobs.values()) job.cancelTimer?.()
    this.functions.clear()
    this.jobs.clear()
    this.uniques.clear()
    this.byUnique.clear()
    this.totalBytes = 0
  }

  // --- framing -------------------------------------------------------------------------

  private receive(session: SessionState, bytes: Buffer): void {
    if (!session.alive) return
    session.input.push(bytes)
    this.frame(session)
    this.count(session)
    if (this.inputBytes > this.maxInputBytes) this.shedInput()
  }

  /** Brings the server's total of partly received input up to date with `session`'s. */
  private count(session: SessionState): void {
    this.inputBytes += session.input.length - session.counted
    session.counted = session.input.length
  }

  /** Cuts off the peers holding the most partial input until the total is within its bound. */
  private shedInput(): void {
    while (this.inputBytes > this.maxInputBytes) {
      let largest: SessionState | undefined
      for (const s of this.sessions.values()) if (largest === undefined || s.counted > largest.counted) largest = s
      if (largest === undefined || largest.counted === 0) return
      this.kill(
        largest,
        `${largest.counted} bytes of unfinished input while all peers together hold over ${this.maxInputBytes}`
      )
    }
  }

  private frame(session: SessionState): void {
    const input = session.input
    while (session.alive && input.length > 0) {
      if (input.byteAt(0) === 0) {
        const header = readHeader(input, this.maxFrame)
        if (header === undefined) return
        if (Either.isLeft(header)) return this.kill(session, header.left.message)
        const { magic, type, size } = header.right
        if (input.length < HEADER_SIZE + size) return
        const data = input.take(HEADER_SIZE + size).subarray(HEADER_SIZE)
        if (magic === "RES") {
          this.send(session, PacketType.ERROR, ["INVALID_MAGIC", "Request magic expected"])
          continue
        }
        const args = splitArgs(type, data)
        if (Either.isLeft(args)) {
          this.send(session, PacketType.ERROR, ["INVALID_ARGUMENTS", args.left.message])
          continue
        }
        this.handle(session, type, args.right)
      } else {
        const nl = input.indexOf(10, session.scanned)
        if (nl < 0) {
          session.scanned = input.length
          if (input.length > MAX_ADMIN_LINE) this.kill(session, `admin line longer than ${MAX_ADMIN_LINE} bytes`)
          return
        }
        session.scanned = 0
        const line = input.take(nl + 1).subarray(0, nl).toString("utf8").replace(/\r$/, "")
        session.write(Buffer.from(this.admin(line), "utf8"))
      }
    }
  }

  private kill(session: SessionState, reason: string): void {
    this.disconnect(session)
    session.close(reason)
  }

  private send(session: SessionState, type: PacketType, args: ReadonlyArray<Arg> = []): void {
    if (session.alive) session.write(response(type, args))
  }

  // --- binary commands -----------------------------------------------------------------

  private handle(session: SessionState, type: PacketType, args: ReadonlyArray<Buffer>): void {
    const T = PacketType
    const str = (i: number) => args[i]?.toString("utf8") ?? ""
    switch (type) {
      case T.CAN_DO:
      case T.CAN_DO_TIMEOUT:
        if (!printableName(args[0]!)) return this.badName(session)
        return this.canDo(session, str(0), type === T.CAN_DO_TIMEOUT ? timeoutMs(str(1)) : 0)
      case T.CANT_DO:
        return this.cantDo(session, str(0))
      case T.RESET_ABILITIES:
        for (const fn of [...session.functions.keys()]) this.cantDo(session, fn)
        return
      case T.PRE_SLEEP:
        for (const fn of session.functions.keys()) {
          if (this.hasRunnable(fn)) {
            session.noopSent = true
            return this.send(session, T.NOOP)
          }
        }
        session.sleeping = true
        for (const fn of session.functions.keys()) this.functions.get(fn)?.sleepers.add(session)
        return
      case T.GRAB_JOB:
      case T.GRAB_JOB_UNIQ:
      case T.GRAB_JOB_ALL:
        return this.grab(session, type === T.GRAB_JOB ? "plain" : "uniq")
      case T.SUBMIT_JOB:
        return this.submit(session, args, 1, false)
      case T.SUBMIT_JOB_BG:
        return this.submit(session, args, 1, true)
      case T.SUBMIT_JOB_HIGH:
        return this.submit(session, args, 0, false)
      case T.SUBMIT_JOB_HIGH_BG:
        return this.submit(session, args, 0, true)
      case T.SUBMIT_JOB_LOW:
        return this.submit(session, args, 2, false)
      case T.SUBMIT_JOB_LOW_BG:
        return this.submit(session, args, 2, true)
      case T.SUBMIT_JOB_EPOCH:
        // Epoch scheduling is not modelled: the job runs at once, as a past epoch would.
        return this.submit(session, [args[0]!, args[1]!, args[3]!], 1, true)
      case T.SUBMIT_REDUCE_JOB:
      case T.SUBMIT_REDUCE_JOB_BACKGROUND:
        return this.submit(session, [args[0]!, args[1]!, args[4]!], 1, type === T.SUBMIT_REDUCE_JOB_BACKGROUND)
      case T.WORK_DATA:
      case T.WORK_WARNING:
      case T.WORK_STATUS:
      case T.WORK_COMPLETE:
      case T.WORK_FAIL:
      case T.WORK_EXCEPTION:
        return this.work(session, type, args)
      case T.GET_STATUS: {
        const job = this.jobs.get(str(0))
        return this.send(session, T.STATUS_RES, [
          str(0),
          job ? "1" : "0",
          job?.worker ? "1" : "0",
          job?.numerator ?? "0",
          job?.denominator ?? "0"
        ])
      }
      case T.GET_STATUS_UNIQUE: {
        const unique = str(0)
        const job = unique === "" ? undefined : this.byUnique.get(unique)?.values().next().value
        return this.send(session, T.STATUS_RES_UNIQUE, [
          unique,
          job ? "1" : "0",
          job?.worker ? "1" : "0",
          job?.numerator ?? "0",
          job?.denominator ?? "0",
          String(job?.clients.length ?? 0)
        ])
      }
      case T.ECHO_REQ:
        return this.send(session, T.ECHO_RES, [args[0] ?? Buffer.alloc(0)])
      case T.OPTION_REQ:
        if (str(0).toLowerCase() === "exceptions") {
          session.exceptions = true
          return this.send(session, T.OPTION_RES, [args[0]!])
        }
        return this.send(session, T.ERROR, ["UNKNOWN_OPTION", "Server does not recognize given option"])
      case T.SET_CLIENT_ID:
        // Shown in `workers` between spaces: nothing there may split or end its line.
        session.clientId = str(0).slice(0, 127).replace(controlChars, "?").replaceAll(" ", "_") || "-"
        return
      default:
        return this.send(session, T.ERROR, ["INVALID_COMMAND", "Command not expected"])
    }
  }

  private badName(session: SessionState): void {
    this.send(session, PacketType.ERROR, [
      "INVALID_FUNCTION_NAME",
      "Function name is not UTF-8 without control characters"
    ])
  }

  private fn(name: string): FunctionState {
    let state = this.functions.get(name)
    if (!state) {
      state = {
        name,
        queues: [[], [], []],
        registrations: 0,
        running: 0,
        bytes: 0,
        maxQueue: undefined,
        created: false,
        sleepers: new Set()
      }
      this.functions.set(name, state)
    }
    return state
  }

  /** Forgets a function nothing refers to any more, so names cannot pile up. */
  private release(state: FunctionState): void {
    if (
      state.registrations === 0 && state.running === 0 && state.maxQueue === undefined && !state.created &&
      state.queues[0].length + state.queues[1].length + state.queues[2].length === 0 &&
      this.functions.get(state.name) === state
    ) this.functions.delete(state.name)
  }

  private canDo(session: SessionState, name: string, timeout: number): void {
    const count = session.functions.get(name) ?? 0
    session.functions.delete(name)
    session.functions.set(name, count + 1)
    session.grabOrder = undefined
    if (timeout > 0) session.timeouts.set(name, timeout)
    else session.timeouts.delete(name)
    const state = this.fn(name)
    state.registrations++
    if (session.sleeping) state.sleepers.add(session)
  }

  /** Removes every registration of `name`; the connection's jobs of it go back to the queue. */
  private cantDo(session: SessionState, name: string): void {
    const count = session.functions.get(name)
    if (count === undefined) return
    session.functions.delete(name)
    session.grabOrder = undefined
    session.timeouts.delete(name)
    const state = this.functions.get(name)!
    state.registrations -= count
    state.sleepers.delete(session)
    for (const job of [...session.assigned]) if (job.fn === name) this.requeue(job)
    this.release(state)
  }

  private hasRunnable(name: string): boolean {
    const state = this.functions.get(name)
    return state !== undefined && state.queues.some((q) => q.length > 0)
  }

  private submit(session: SessionState, args: ReadonlyArray<Buffer>, priority: Priority, background: boolean): void {
    if (!printableName(args[0]!)) return this.badName(session)
    const fnName = args[0]!.toString("utf8")
    const unique = args[1]!.toString("utf8")
    if (args[1]!.length > 64)
      return this.send(session, PacketType.ERROR, ["ARGUMENT_TOO_LARGE", "Unique value too large"])
    const payload = args[2]!
    const uniqueKey = unique === ""
      ? undefined
      : unique === "-"
      ? (payload.length === 0 ? undefined : `${fnName}\0-\0${payload.toString("latin1")}`)
      : `${fnName}\0${unique}`
    const existing = uniqueKey !== undefined ? this.uniques.get(uniqueKey) : undefined
    if (existing) {
      if (!background) this.attach(existing, session)
      return this.send(session, PacketType.JOB_CREATED, [existing.handle])
    }
    const bytes = payload.length + args[0]!.length + args[1]!.length
    const state = this.functions.get(fnName)
    const limit = (state?.maxQueue ?? [this.maxQueue, this.maxQueue, this.maxQueue])[priority]
    if (
      (limit > 0 && state !== undefined && this.totalOf(state) >= limit) ||
      (this.maxQueueBytes > 0 && (state?.bytes ?? 0) + bytes > this.maxQueueBytes) ||
      (this.maxTotalBytes > 0 && this.totalBytes + bytes > this.maxTotalBytes)
    ) return this.send(session, PacketType.ERROR, ["QUEUE_ERROR", "Job queue is full"])
    const job: Job = {
      handle: `${this.prefix}:${this.nextHandle++}`,
      fn: fnName,
      unique,
      uniqueKey,
      // A copy: the frame may share a large socket chunk that should not stay alive with the job.
      data: Buffer.from(payload),
      priority,
      background,
      clients: [],
      worker: undefined,
      numerator: "0",
      denominator: "0",
      retries: 0,
      ignore: false,
      bytes,
      cancelTimer: undefined
    }
    this.jobs.set(job.handle, job)
    if (uniqueKey !== undefined) this.uniques.set(uniqueKey, job)
    if (unique !== "") {
      const same = this.byUnique.get(unique)
      if (same) same.add(job)
      else this.byUnique.set(unique, new Set([job]))
    }
    this.fn(fnName).bytes += bytes
    this.totalBytes += bytes
    if (!background) this.attach(job, session)
    this.enqueue(job)
    this.send(session, PacketType.JOB_CREATED, [job.handle])
  }

  private attach(job: Job, session: SessionState): void {
    job.clients.push(session)
    session.attached.add(job)
  }

  private enqueue(job: Job): void {
    const state = this.fn(job.fn)
    state.queues[job.priority].push(job)
    for (const session of state.sleepers) {
      if (!session.noopSent) {
        session.noopSent = true
        this.send(session, PacketType.NOOP)
      }
    }
  }

  private grab(session: SessionState, kind: "plain" | "uniq"): void {
    if (session.sleeping) {
      session.sleeping = false
      for (const fn of session.functions.keys()) this.functions.get(fn)?.sleepers.delete(session)
    }
    session.noopSent = false
    session.grabOrder ??= [...session.functions.keys()].reverse()
    for (const name of session.grabOrder) {
      const state = this.functions.get(name)
      if (!state) continue
      for (const queue of state.queues) {
        while (queue.length > 0) {
          const job = queue.shift()!
          if (job.ignore) {
            this.remove(job, false)
            continue
          }
          job.worker = session
          session.assigned.add(job)
          state.running++
          const timeout = session.timeouts.get(name)
          if (timeout !== undefined) job.cancelTimer = this.timer(timeout, () => this.expire(job, session))
          return kind === "uniq"
            ? this.send(session, PacketType.JOB_ASSIGN_UNIQ, [job.handle, job.fn, job.unique, job.data])
            : this.send(session, PacketType.JOB_ASSIGN, [job.handle, job.fn, job.data])
        }
      }
    }
    this.send(session, PacketType.NO_JOB)
  }

  private timer(ms: number, onExpiry: () => void): () => void {
    const t = setTimeout(onExpiry, Math.min(ms, MAX_TIMEOUT_MS))
    t.unref()
    return () => clearTimeout(t)
  }

  /** CAN_DO_TIMEOUT passed: the job goes back to the queue (a retry), as in gearmand 1.1. */
  private expire(job: Job, worker: SessionState): void {
    job.cancelTimer = undefined
    if (job.worker === worker && this.jobs.get(job.handle) === job) this.requeue(job)
  }

  private work(session: SessionState, type: PacketType, args: ReadonlyArray<Buffer>): void {
    const T = PacketType
    const handle = args[0]!.toString("utf8")
    const job = this.jobs.get(handle)
    if (!job || job.worker !== session) {
      const text = type === T.WORK_DATA || type === T.WORK_WARNING
        ? "Job does not exist on server"
        : type === T.WORK_EXCEPTION
        ? "An exception was received for a job that does not exist"
        : "Job given in work result not found"
      return this.send(session, T.ERROR, ["JOB_NOT_FOUND", text])
    }
    if (type === T.WORK_STATUS) {
      job.numerator = args[1]!.toString("latin1")
      job.denominator = args[2]!.toString("latin1")
    }
    // Encoded once for every client: a large result is not copied per waiter.
    let packet: Buffer | undefined
    let downgraded: Buffer | undefined
    for (const client of job.clients) {
      if (!client.alive) continue
      if (type === T.WORK_EXCEPTION && !client.exceptions)
        client.write(downgraded ??= response(T.WORK_FAIL, [handle + "\0"]))
      else client.write(packet ??= response(type, args))
    }
    if (type === T.WORK_COMPLETE || type === T.WORK_FAIL || type === T.WORK_EXCEPTION) {
      if (!this.uncounted.has(job.fn)) {
        if (type === T.WORK_COMPLETE) this.completed++
        else this.failed++
      }
      this.remove(job)
    }
  }

  /** Puts a job whose worker let go back at the tail of its queue, or drops it (retries). */
  private requeue(job: Job): void {
    const worker = job.worker
    if (worker) {
      job.cancelTimer?.()
      job.cancelTimer = undefined
      worker.assigned.delete(job)
      this.fn(job.fn).running--
      job.worker = undefined
    }
    job.retries++
    if (this.jobRetries > 0 && job.retries >= this.jobRetries) {
      for (const client of job.clients) this.send(client, PacketType.WORK_FAIL, [job.handle])
      return this.remove(job, false)
    }
    job.numerator = "0"
    job.denominator = "0"
    this.enqueue(job)
  }

  /** Forgets a job; `queued`: it may still be in its queue (else it was taken out already). */
  private remove(job: Job, queued = true, state: FunctionState = this.functions.get(job.fn)!): void {
    if (!this.jobs.delete(job.handle)) return
    if (job.uniqueKey !== undefined && this.uniques.get(job.uniqueKey) === job) this.uniques.delete(job.uniqueKey)
    const same = this.byUnique.get(job.unique)
    if (same?.delete(job) && same.size === 0) this.byUnique.delete(job.unique)
    if (job.worker) {
      job.cancelTimer?.()
      job.cancelTimer = undefined
      job.worker.assigned.delete(job)
      state.running--
      job.worker = undefined
    } else if (queued) {
      const queue = state.queues[job.priority]
      const at = queue.indexOf(job)
      if (at >= 0) queue.splice(at, 1)
    }
    state.bytes -= job.bytes
    this.totalBytes -= job.bytes
    for (const client of job.clients) client.attached.delete(job)
    this.release(state)
  }

  private disconnect(session: SessionState): void {
    if (!session.alive) return
    session.alive = false
    this.sessions.delete(session.id)
    session.input.clear()
    session.scanned = 0
    this.count(session)
    for (const job of session.attached) {
      const before = job.clients.length
      for (let i = job.clients.length - 1; i >= 0; i--) if (job.clients[i] === session) job.clients.splice(i, 1)
      // A queued foreground job nobody waits for any more is dropped when a worker grabs it.
      if (before > job.clients.length && !job.background && job.clients.length === 0 && !job.worker) job.ignore = true
    }
    session.attached.clear()
    // One pass over the connection's functions and jobs, however many it registered.
    for (const [name, count] of session.functions) {
      const state = this.functions.get(name)!
      state.registrations -= count
      state.sleepers.delete(session)
    }
    const names = [...session.functions.keys()]
    session.functions.clear()
    session.timeouts.clear()
    session.grabOrder = undefined
    for (const job of [...session.assigned]) this.requeue(job)
    for (const name of names) {
      const state = this.functions.get(name)
      if (state) this.release(state)
    }
  }

  private totalOf(state: FunctionState): number {
    return state.queues[0].length + state.queues[1].length + state.queues[2].length + state.running
  }

  // --- admin text protocol (gearmand 1.1 dialect, line endings included) -----------------

  private admin(line: string): string {
    const words = line.split(" ").filter((w) => w.length > 0)
    const cmd = words[0]?.toLowerCase() ?? ""
    const list = (rows: ReadonlyArray<string>) => rows.map((r) => r + "\n").join("") + ".\n"
    const badName = (name: string) => hasControl.test(name)
    const badNameAnswer = "ERR INVALID_FUNCTION_NAME Function+name+is+not+UTF-8+without+control+characters\r\n"
    switch (cmd) {
      case "status":
        return list(
          [...this.functions.values()].map((f) => `${f.name}\t${this.totalOf(f)}\t${f.running}\t${f.registrations}`)
        )
      case "prioritystatus":
        return list(
          [...this.functions.values()].map((s) =>
            `${s.name}\t${s.queues[0].length}\t${s.queues[1].length}\t${s.queues[2].length}\t${s.registrations}`
          )
        )
      case "workers":
        return list(
          [...this.sessions.values()].map((s) => {
            let fns = ""
            for (const name of s.grabOrder ??= [...s.functions.keys()].reverse())
              fns += ` ${name}`.repeat(s.functions.get(name)!)
            return `${s.id} ${s.address} ${s.clientId} :${fns}`
          })
        )
      case "version":
        return "OK garivini-memory\n"
      case "getpid":
        return `OK ${process.pid}\n`
      case "verbose":
        return "OK ERROR\n"
      case "maxqueue": {
        const name = words[1]
        if (name === undefined) {
          return "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
        }
        const state = this.functions.get(name)
        const values = words.slice(2).map((w) => Math.max(0, Number.parseInt(w, 10) || 0))
        if (state) {
          const one = values[0]
          state.maxQueue = values.length >= 3
            ? [values[0]!, values[1]!, values[2]!]
            : one === undefined
            ? undefined
            : [one, one, one]
          this.release(state)
        }
        return "OK\r\n"
      }
      case "show": {
        const what = words.slice(1).map((w) => w.toLowerCase()).join(" ")
        if (what === "jobs") {
          return list(
            [...this.jobs.values()].map((j) =>
              `${j.handle}\t${j.retries}\t${j.ignore ? 1 : 0}\t${j.background ? 1 : 0}`
            )
          )
        }
        // A unique is any bytes but NUL: one with a line break must not forge rows.
        if (what === "unique jobs") return list([...this.jobs.values()].map((j) => j.unique.replace(controlChars, "?")))
        return "ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
      }
      case "cancel": {
        if (words[1]?.toLowerCase() !== "job" || words[2] === undefined) break
        const job = this.jobs.get(words[2])
        if (!job) return "ERR UNKNOWN_JOB\r\n"
        for (const client of job.clients) this.send(client, PacketType.WORK_FAIL, [job.handle])
        for (const client of job.clients) client.attached.delete(job)
        job.clients.length = 0
        job.ignore = true
        return "OK\r\n"
      }
      case "create":
        if (words[1]?.toLowerCase() !== "function" || words[2] === undefined) break
        if (badName(words[2])) return badNameAnswer
        this.fn(words[2]).created = true
        return "OK\r\n"
      case "drop": {
        if (words[1]?.toLowerCase() !== "function" || words[2] === undefined) break
        const state = this.functions.get(words[2])
        if (!state) return "ERR function not found\r\n"
        if (state.registrations > 0 || state.running > 0)
          return "ERR there are still connected workers or executing clients\r\n"
        // Its queued jobs go with it (their waiting clients get WORK_FAIL, as on `cancel job`):
        // left behind, they would hold their uniques and swallow later submits.
        this.functions.delete(state.name)
        for (const queue of state.queues) {
          for (const job of queue.splice(0)) {
            for (const client of job.clients) this.send(client, PacketType.WORK_FAIL, [job.handle])
            this.remove(job, false, state)
          }
        }
        return "OK\r\n"
      }
    }
    return `ERR UNKNOWN_COMMAND Unknown+server+command${words[0] ?? ""}\r\n`
  }
}

/** CAN_DO_TIMEOUT's ASCII milliseconds as gearmand reads them: not a number, 0 or less = none. */
const timeoutMs = (text: string): number => {
  const ms = Number.parseInt(text, 10)
  return Number.isFinite(ms) && ms > 0 ? Math.max(MIN_TIMEOUT_MS, ms) : 0
}
