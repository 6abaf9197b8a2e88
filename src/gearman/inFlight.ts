// The jobs a worker process is running, and the outcomes it could not deliver. gearmand
// re-queues a job whose worker connection was cut and may hand it back to the same process
// after its reconnect (same handle); a stored job can also arrive again under another handle
// (dispatched twice). Running it again would be a second run of one job in one process: the
// new assignment joins the run in progress instead, or takes the outcome of a run that ended
// while its connection was gone. Everything here runs synchronously on the event loop (packet
// callbacks and job ends), so a lookup and a registration never interleave.
import { MetricLabel } from "effect"
import { crc32 } from "../crc32.js"
import type { PacketType } from "../protocol/gearman.js"
import { request } from "../protocol/gearman.js"
import type { Connection } from "./connection.js"
import type { Payload } from "./GearmanClient.js"
import { jobsJoined } from "./metrics.js"

/** One delivery of a job to this process: the connection it came on and its handle there. */
export interface Assignment {
  readonly connection: Connection
  readonly handle: string
}

/** What a run ended with, as the packet that reports it (WORK_FAIL carries no data). */
export interface Outcome {
  readonly type: typeof PacketType.WORK_COMPLETE | typeof PacketType.WORK_FAIL | typeof PacketType.WORK_EXCEPTION
  readonly data?: Payload
}

export interface Run {
  readonly functionName: string
  readonly unique: string
  readonly payload: Buffer
  /** The work's own identity, if its function gives one (a stored job's dbid:jobid). */
  readonly work: string | undefined
  /** The first is the delivery that started the run; the others joined it. */
  readonly assignments: Array<Assignment>
}

interface Undelivered {
  readonly functionName: string
  readonly unique: string
  readonly checksum: number
  readonly outcome: Outcome
  readonly at: number
}

/** How long an undelivered outcome waits for its job to come back (reconnects back off to 5 s). */
const KEEP_MS = 60_000
/** At most this many undelivered outcomes, of at most this many bytes in all, are kept (the oldest go first). */
const KEEP_MAX = 1024
const KEEP_BYTES = 64 * 1024 * 1024

const handleKey = (server: string, handle: string) => `${server}\n${handle}`
const joinedTo = { running: [MetricLabel.make("to", "running")], finished: [MetricLabel.make("to", "finished")] }

const packet = (handle: string, outcome: Outcome) =>
  request(outcome.type, outcome.data === undefined ? [handle] : [handle, outcome.data])

export interface InFlight {
  /**
   * The run this delivery is already part of: the same server and handle (unless a connection
   * that is still open holds it: a timeout took it back), or the same work.
   */
  readonly running: (server: string, handle: string, work: string | undefined) => Run | undefined
  /** Registers a new run for its first delivery. */
  readonly start: (first: Assignment, job: Omit<Run, "assignments">) => Run
  /** Adds a delivery to a run in progress: it gets the run's data, status and outcome. */
  readonly join: (run: Run, assignment: Assignment) => void
  /**
   * The outcome of a run of this same job (server, handle, function, unique id, payload) that
   * ended while its connection was gone, taken (it is answered once).
   */
  readonly undelivered: (
    server: string,
    handle: string,
    job: { readonly functionName: string; readonly unique: string; readonly payload: Buffer }
  ) => Outcome | undefined
  /** Sends a packet of the run (WORK_DATA, _WARNING, _STATUS) to every delivery still connected. */
  readonly send: (run: Run, type: PacketType, args: ReadonlyArray<Payload>) => void
  /**
   * Ends the run: its outcome goes to every delivery (none when interrupted); one whose
   * connection is gone is kept for a while, in case the job server hands the job back.
   */
  readonly end: (run: Run, outcome: Outcome | undefined) => void
}

export const makeInFlight = (): InFlight => {
  // Per server, then per handle: no key string is built per job (the server string is the
  // connection's own, its hash cached).
  const byHandle = new Map<string, Map<string, Run>>()
  const handlesOf = (server: string) => {
    let handles = byHandle.get(server)
    if (handles === undefined) byHandle.set(server, handles = new Map())
    return handles
  }
  const byWork = new Map<string, Run>()
  const kept = new Map<string, Undelivered>()

  let keptBytes = 0
  const size = (outcome: Outcome) => outcome.data === undefined ? 0 : Buffer.byteLength(outcome.data)
  const forget = (key: string, entry: Undelivered) => {
    kept.delete(key)
    keptBytes -= size(entry.outcome)
  }

  const keep = (assignment: Assignment, run: Run, outcome: Outcome) => {
    // Date.now, not Clock: this runs in socket and job-end callbacks, outside any fiber's time.
    const now = Date.now()
    const key = handleKey(assignment.connection.server, assignment.handle)
    const previous = kept.get(key)
    if (previous !== undefined) forget(key, previous)
    kept.set(key, {
      functionName: run.functionName,
      unique: run.unique,
      checksum: crc32(run.payload),
      outcome,
      at: now
    })
    keptBytes += size(outcome)
    for (const [oldest, entry] of kept) {
      if (kept.size <= KEEP_MAX && keptBytes <= KEEP_BYTES && now - entry.at < KEEP_MS) break
      forget(oldest, entry)
    }
  }

  return {
    running: (server, handle, work) => {
      const run = byHandle.get(server)?.get(handle)
      if (run === undefined) return work === undefined ? undefined : byWork.get(work)
      // Still held on an open connection: the server took it back on purpose (its
      // CAN_DO_TIMEOUT expired) and wants it run again, not waited for.
      const held = run.assignments.some((a) =>
        a.handle === handle && a.connection.server === server && a.connection.isOpen()
      )
      return held ? undefined : run
    },
    start: (first, job) => {
      const run: Run = {
        functionName: job.functionName,
        unique: job.unique,
        payload: job.payload,
        work: job.work,
        assignments: [first]
      }
      handlesOf(first.connection.server).set(first.handle, run)
      if (run.work !== undefined) byWork.set(run.work, run)
      return run
    },
    join: (run, assignment) => {
      jobsJoined.unsafeUpdate(1, joinedTo.running)
      run.assignments.push(assignment)
      handlesOf(assignment.connection.server).set(assignment.handle, run)
    },
    undelivered: (server, handle, job) => {
      if (kept.size === 0) return undefined
      const key = handleKey(server, handle)
      const entry = kept.get(key)
      if (entry === undefined) return undefined
      forget(key, entry)
      // A restarted gearmand numbers its handles from 1 again: only the same job takes the outcome.
      const same = Date.now() - entry.at < KEEP_MS && entry.functionName === job.functionName &&
        entry.unique === job.unique && entry.checksum === crc32(job.payload)
      if (!same) return undefined
      jobsJoined.unsafeUpdate(1, joinedTo.finished)
      return entry.outcome
    },
    send: (run, type, args) => {
      for (const a of run.assignments) a.connection.send(request(type, [a.handle, ...args]))
    },
    end: (run, outcome) => {
      for (const a of run.assignments) {
        const handles = byHandle.get(a.connection.server)
        if (handles?.get(a.handle) === run) handles.delete(a.handle)
      }
      if (run.work !== undefined && byWork.get(run.work) === run) byWork.delete(run.work)
      if (outcome === undefined) return
      let lost: Array<Assignment> | undefined
      for (const a of run.assignments) {
        // false: the connection is closed (the job server re-queues the job).
        if (!a.connection.send(packet(a.handle, outcome))) (lost ??= []).push(a)
      }
      if (lost === undefined) return
      for (const a of lost) {
        // A delivery that came back on another connection already has its answer.
        const answered = run.assignments.some((b) =>
          !lost.includes(b) && b.handle === a.handle && b.connection.server === a.connection.server
        )
        if (!answered) keep(a, run, outcome)
      }
    }
  }
}

/** Answers a delivery with an outcome it takes from elsewhere (a joined run, a kept outcome). */
export const answer = (assignment: Assignment, outcome: Outcome): boolean =>
  assignment.connection.send(packet(assignment.handle, outcome))
