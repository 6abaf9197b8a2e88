// An in-process job server with gearmand 1.1's semantics, speaking the wire protocol on
// byte streams: the memory layer connects to it, and a TCP listener can serve it as is.
//
// Kept from gearmand: FIFO per function within priority (high, normal, low), a requeued job
// goes to the tail; coalescing by (function, unique) over queued and running jobs ("-" =
// by payload, "" = never); every WORK_* fanned out to all attached foreground clients
// (WORK_EXCEPTION downgraded to WORK_FAIL "HANDLE\0" without the `exceptions` option);
// NOOP once per sleep; a foreground job whose clients all left is dropped when grabbed;
// a worker's jobs are requeued when it vanishes (`jobRetries` > 0 drops after N attempts);
// admin `status` counts queued + running.
// Better than gearmand: frames are validated against their size (an ERROR or a close instead
// of a desynchronised stream).
import { Either } from "effect"
import { DEFAULT_MAX_FRAME, HEADER_SIZE, isKnownType, PacketType, response, splitArgs, type Arg } from "./protocol.js"

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
}

/** Jobs a function has ended since the server started (for a live summary). */
export interface FunctionCounters {
  readonly completed: number
  readonly failed: number
}

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
}

interface FunctionState {
  readonly name: string
  readonly queues: [Array<Job>, Array<Job>, Array<Job>]
  registrations: number
  running: number
  maxQueue: [number, number, number]
  completed: number
  failed: number
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
  readonly close: () => void
  pending: Buffer
  functions: Array<string> // head-inserted, duplicates kept (gearmand counts them)
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
  private readonly sessions = new Map<number, SessionState>()
  /** Workers that sent PRE_SLEEP and no GRAB since: the only ones a new job may NOOP. */
  private readonly sleepers = new Set<SessionState>()
  private nextHandle = 1
  private nextSession = 1
  private readonly prefix: string
  private readonly jobRetries: number
  private readonly maxFrame: number
  private readonly maxQueue: number

  constructor(options: JobServerOptions = {}) {
    this.prefix = options.handlePrefix ?? "H:memory"
    this.jobRetries = options.jobRetries ?? 0
    this.maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME
    this.maxQueue = Math.max(0, options.maxQueue ?? 0)
  }

  /** Per function: jobs completed and failed (WORK_FAIL / WORK_EXCEPTION) since the start. */
  counters(): ReadonlyMap<string, FunctionCounters> {
    return new Map([...this.functions.values()].map((f) => [f.name, { completed: f.completed, failed: f.failed }]))
  }

  /** Accepts a peer. `write` sends it bytes; `close` cuts it off (on a fatal framing error). */
  connect(address: string, write: (bytes: Buffer) => void, close: () => void): Session {
    const id = this.nextSession++
    const session: SessionState = {
      id,
      address,
      write,
      close,
      pending: Buffer.alloc(0),
      functions: [],
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
      session.close()
    }
    this.functions.clear()
    this.jobs.clear()
    this.uniques.clear()
  }

  // --- framing -------------------------------------------------------------------------

  private receive(session: SessionState, bytes: Buffer): void {
    if (!session.alive) return
    session.pending = session.pending.length === 0 ? bytes : Buffer.concat([session.pending, bytes])
    while (session.alive && session.pending.length > 0) {
      const buf = session.pending
      if (buf[0] === 0) {
        if (buf.length < 4) return
        if (buf[1] !== 0x52 || buf[2] !== 0x45 || (buf[3] !== 0x51 && buf[3] !== 0x53)) return this.kill(session)
        if (buf.length < HEADER_SIZE) return
        const type = buf.readUInt32BE(4)
        const size = buf.readUInt32BE(8)
        if (!isKnownType(type) || size > this.maxFrame) return this.kill(session)
        if (buf.length < HEADER_SIZE + size) return
        const data = buf.subarray(HEADER_SIZE, HEADER_SIZE + size)
        session.pending = buf.subarray(HEADER_SIZE + size)
        if (buf[3] === 0x53) {
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
        const nl = buf.indexOf(10)
        if (nl < 0) {
          if (buf.length > 65536) this.kill(session)
          return
        }
        const line = buf.subarray(0, nl).toString("utf8").replace(/\r$/, "")
        session.pending = buf.subarray(nl + 1)
        session.write(Buffer.from(this.admin(line), "utf8"))
      }
    }
  }

  private kill(session: SessionState): void {
    this.disconnect(session)
    session.close()
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
        return this.canDo(session, str(0))
      case T.CANT_DO:
        return this.cantDo(session, str(0))
      case T.RESET_ABILITIES:
        for (const fn of new Set(session.functions)) this.cantDo(session, fn)
        return
      case T.PRE_SLEEP:
        if (session.functions.some((fn) => this.hasRunnable(fn))) {
          session.noopSent = true
          return this.send(session, T.NOOP)
        }
        this.sleepers.add(session)
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
        const job = unique === "" ? undefined : [...this.jobs.values()].find((j) => j.unique === unique)
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
        session.clientId = str(0).slice(0, 127) || "-"
        return
      default:
        return this.send(session, T.ERROR, ["INVALID_COMMAND", "Command not expected"])
    }
  }

  private fn(name: string): FunctionState {
    let state = this.functions.get(name)
    if (!state) {
      const max = this.maxQueue
      state = { name, queues: [[], [], []], registrations: 0, running: 0, maxQueue: [max, max, max], completed: 0, failed: 0 }
      this.functions.set(name, state)
    }
    return state
  }

  private canDo(session: SessionState, name: string): void {
    session.functions.unshift(name)
    this.fn(name).registrations++
  }

  private cantDo(session: SessionState, name: string): void {
    const before = session.functions.length
    session.functions = session.functions.filter((f) => f !== name)
    this.fn(name).registrations -= before - session.functions.length
    for (const job of [...session.assigned]) if (job.fn === name) this.requeue(job)
  }

  private hasRunnable(name: string): boolean {
    const state = this.functions.get(name)
    return state !== undefined && state.queues.some((q) => q.length > 0)
  }

  private submit(session: SessionState, args: ReadonlyArray<Buffer>, priority: Priority, background: boolean): void {
    const fnName = args[0]!.toString("utf8")
    const unique = args[1]!.toString("utf8")
    const data = Buffer.from(args[2]!)
    if (args[1]!.length > 64) return this.send(session, PacketType.ERROR, ["ARGUMENT_TOO_LARGE", "Unique value too large"])
    const uniqueKey =
      unique === "" ? undefined : unique === "-" ? (data.length === 0 ? undefined : `${fnName}\0-\0${data.toString("latin1")}`) : `${fnName}\0${unique}`
    const existing = uniqueKey !== undefined ? this.uniques.get(uniqueKey) : undefined
    if (existing) {
      if (!background) this.attach(existing, session)
      return this.send(session, PacketType.JOB_CREATED, [existing.handle])
    }
    const state = this.fn(fnName)
    const limit = state.maxQueue[priority]
    if (limit > 0 && this.totalOf(state) >= limit) return this.send(session, PacketType.ERROR, ["QUEUE_ERROR", "Job queue is full"])
    const job: Job = {
      handle: `${this.prefix}:${this.nextHandle++}`,
      fn: fnName,
      unique,
      uniqueKey,
      data,
      priority,
      background,
      clients: [],
      worker: undefined,
      numerator: "0",
      denominator: "0",
      retries: 0,
      ignore: false
    }
    this.jobs.set(job.handle, job)
    if (uniqueKey !== undefined) this.uniques.set(uniqueKey, job)
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
    for (const session of this.sleepers) {
      if (!session.noopSent && session.functions.includes(job.fn)) {
        session.noopSent = true
        this.send(session, PacketType.NOOP)
      }
    }
  }

  private grab(session: SessionState, kind: "plain" | "uniq"): void {
    this.sleepers.delete(session)
    session.noopSent = false
    for (const name of session.functions) {
      const state = this.functions.get(name)
      if (!state) continue
      for (const queue of state.queues) {
        while (queue.length > 0) {
          const job = queue.shift()!
          if (job.ignore) {
            this.remove(job)
            continue
          }
          job.worker = session
          session.assigned.add(job)
          state.running++
          return kind === "uniq"
            ? this.send(session, PacketType.JOB_ASSIGN_UNIQ, [job.handle, job.fn, job.unique, job.data])
            : this.send(session, PacketType.JOB_ASSIGN, [job.handle, job.fn, job.data])
        }
      }
    }
    this.send(session, PacketType.NO_JOB)
  }

  private work(session: SessionState, type: PacketType, args: ReadonlyArray<Buffer>): void {
    const T = PacketType
    const handle = args[0]!.toString("utf8")
    const job = this.jobs.get(handle)
    if (!job || job.worker !== session) {
      const text =
        type === T.WORK_DATA || type === T.WORK_WARNING
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
    for (const client of job.clients) {
      if (type === T.WORK_EXCEPTION && !client.exceptions) this.send(client, T.WORK_FAIL, [handle + "\0"])
      else this.send(client, type, args)
    }
    if (type === T.WORK_COMPLETE || type === T.WORK_FAIL || type === T.WORK_EXCEPTION) {
      const state = this.fn(job.fn)
      if (type === T.WORK_COMPLETE) state.completed++
      else state.failed++
      this.remove(job)
    }
  }

  /** Puts a job whose worker let go back at the tail of its queue, or drops it (retries). */
  private requeue(job: Job): void {
    const worker = job.worker
    if (worker) {
      worker.assigned.delete(job)
      this.fn(job.fn).running--
      job.worker = undefined
    }
    job.retries++
    if (this.jobRetries > 0 && job.retries >= this.jobRetries) {
      for (const client of job.clients) this.send(client, PacketType.WORK_FAIL, [job.handle])
      return this.remove(job)
    }
    job.numerator = "0"
    job.denominator = "0"
    this.enqueue(job)
  }

  private remove(job: Job): void {
    if (!this.jobs.delete(job.handle)) return
    if (job.uniqueKey !== undefined && this.uniques.get(job.uniqueKey) === job) this.uniques.delete(job.uniqueKey)
    if (job.worker) {
      job.worker.assigned.delete(job)
      this.fn(job.fn).running--
      job.worker = undefined
    } else {
      const queue = this.fn(job.fn).queues[job.priority]
      const at = queue.indexOf(job)
      if (at >= 0) queue.splice(at, 1)
    }
    for (const client of job.clients) client.attached.delete(job)
  }

  private disconnect(session: SessionState): void {
    if (!session.alive) return
    session.alive = false
    this.sessions.delete(session.id)
    this.sleepers.delete(session)
    for (const job of session.attached) {
      const at = job.clients.indexOf(session)
      while (job.clients.indexOf(session) >= 0) job.clients.splice(job.clients.indexOf(session), 1)
      // A queued foreground job nobody waits for any more is dropped when a worker grabs it.
      if (at >= 0 && !job.background && job.clients.length === 0 && !job.worker) job.ignore = true
    }
    session.attached.clear()
    for (const name of new Set(session.functions)) this.cantDo(session, name)
    for (const job of [...session.assigned]) this.requeue(job)
  }

  private totalOf(state: FunctionState): number {
    return state.queues[0].length + state.queues[1].length + state.queues[2].length + state.running
  }

  // --- admin text protocol (gearmand 1.1 dialect, line endings included) -----------------

  private admin(line: string): string {
    const words = line.split(" ").filter((w) => w.length > 0)
    const cmd = words[0]?.toLowerCase() ?? ""
    const list = (rows: ReadonlyArray<string>) => rows.map((r) => r + "\n").join("") + ".\n"
    switch (cmd) {
      case "status":
        return list([...this.functions.values()].map((f) => `${f.name}\t${this.totalOf(f)}\t${f.running}\t${f.registrations}`))
      case "prioritystatus":
        return list(
          [...this.functions.values()].map((s) => `${s.name}\t${s.queues[0].length}\t${s.queues[1].length}\t${s.queues[2].length}\t${s.registrations}`)
        )
      case "workers":
        return list(
          [...this.sessions.values()].map((s) => `${s.id} ${s.address} ${s.clientId} :${s.functions.map((f) => " " + f).join("")}`)
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
          const one = values[0] ?? this.maxQueue
          state.maxQueue = values.length >= 3 ? [values[0]!, values[1]!, values[2]!] : [one, one, one]
        }
        return "OK\r\n"
      }
      case "show": {
        const what = words.slice(1).map((w) => w.toLowerCase()).join(" ")
        if (what === "jobs") {
          return list([...this.jobs.values()].map((j) => `${j.handle}\t${j.retries}\t${j.ignore ? 1 : 0}\t${j.background ? 1 : 0}`))
        }
        if (what === "unique jobs") return list([...this.jobs.values()].map((j) => j.unique))
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
        this.fn(words[2])
        return "OK\r\n"
      case "drop": {
        if (words[1]?.toLowerCase() !== "function" || words[2] === undefined) break
        const state = this.functions.get(words[2])
        if (!state) return "ERR function not found\r\n"
        if (state.registrations > 0 || state.running > 0) return "ERR there are still connected workers or executing clients\r\n"
        this.functions.delete(words[2])
        return "OK\r\n"
      }
    }
    return `ERR UNKNOWN_COMMAND Unknown+server+command${words[0] ?? ""}\r\n`
  }
}
