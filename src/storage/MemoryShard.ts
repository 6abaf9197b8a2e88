/**
 * A shard held in memory: the `job` table's semantics (auto-increment ids, the unique
 * `(funcname, uniqkey)` index with INSERT IGNORE, atomic claim) in a `Ref`, with migration 2's
 * columns (a v1 table is the SQL shards' concern). Every operation is
 * one `Ref.modify`, so concurrent claimers see disjoint jobs, as with SKIP LOCKED.
 */
import { Effect, Option, Ref } from "effect"
import { FAILCOUNT_MAX, jobState as stateOf, NEVER, NO_LIFE, priorityValue, uniqueIdentity } from "../Job.js"
import type { JobRecord, StoredJob, ValidNewJob } from "../Job.js"
import { patched, takeTokens } from "./flow.js"
import type { Bucket, FunctionControl, ScheduleRow } from "./flow.js"
import { ShardUnreached } from "./ShardBackend.js"
import type {
  FailOutcome,
  HeartbeatResult,
  HeldRow,
  RemoveResult,
  RescheduleOutcome,
  ShardCancelOutcome,
  FlowBackend,
  FunctionCounts,
  RowInsert,
  ShardBackend,
  ShardListQuery
} from "./ShardBackend.js"

/**
 * The table. It is mutated only inside `Ref.modify`, whose function runs synchronously and
 * atomically, so no copy per operation is needed.
 */
/** A row: the job with its life columns, and (as `lease`) its lease token, which inspection does not show. */
type Row = JobRecord

interface Table {
  nextId: number
  /** By jobid; insertion order is jobid order. */
  readonly rows: Map<number, Row>
  /** uniqueIdentity(funcname, uniqkey) → jobid */
  readonly unique: Map<string, number>
}

export interface MemoryShard extends ShardBackend {
  /** Test hook: while down, every operation fails as if the server refused the connection. */
  readonly setDown: (down: boolean) => Effect.Effect<void>
}

/** A row as inspection shows it: without its lease token and traceparent (the SQL shards do not read them there). */
const visible = ({ lease: _lease, traceparent: _traceparent, ...job }: Row): JobRecord => job

export const make = (dbid: number, options: { readonly down?: boolean } = {}): Effect.Effect<MemoryShard> =>
  Effect.gen(function*() {
    const table = yield* Ref.make<Table>({ nextId: 1, rows: new Map(), unique: new Map() })
    const down = yield* Ref.make(options.down ?? false)
    /** minute → counts (the slots of the SQL table are one row here). */
    const minutes = new Map<number, { completed: number; failed: number }>()

    const guard = <A>(effect: Effect.Effect<A>): Effect.Effect<A, ShardUnreached> =>
      Effect.flatMap(
        Ref.get(down),
        (isDown) => isDown ? Effect.fail(new ShardUnreached({ reason: `memory shard ${dbid} is down` })) : effect
      )

    const update = (jobids: ReadonlyArray<number>, f: (job: Row) => Row) =>
      guard(Ref.modify(table, (t): [number, Table] => {
        let n = 0
        for (const id of new Set(jobids)) {
          const job = t.rows.get(id)
          if (job === undefined) continue
          // Rows matched, not rows changed: mysql2 connects with CLIENT_FOUND_ROWS.
          n++
          t.rows.set(id, f(job))
        }
        return [n, t]
      }))

    const insert = (input: ReadonlyArray<ValidNewJob>) =>
      guard(Ref.modify(table, (t): [ReadonlyArray<RowInsert>, Table] => {
        const results = input.map((job): RowInsert => {
          // Like InnoDB, an ignored row still uses up an auto-increment value.
          const jobid = t.nextId++
          if (job.uniqkey !== null) {
            const identity = uniqueIdentity(job.funcname, job.uniqkey)
            const existing = t.unique.get(identity)
            if (existing !== undefined) return { _tag: "Duplicate", existing }
            t.unique.set(identity, jobid)
          }
          // A row stored leased (the Injector's) keeps its token (as `lease`) and its lease.
          t.rows.set(jobid, {
            dbid,
            jobid,
            ...job,
            failcount: 0,
            ...NO_LIFE,
            leasedUntil: job.lease === undefined ? null : job.runAfter
          })
          return { _tag: "Inserted", jobid }
        })
        return [results, t]
      }))

    const remove = (jobs: ReadonlyArray<HeldRow>, liveOnly = false) =>
      guard(Ref.modify(table, (t): [RemoveResult, Table] => {
        let deleted = 0
        const fenced: Array<number> = []
        const seen = new Set<number>()
        for (const held of jobs) {
          if (seen.has(held.jobid)) continue
          seen.add(held.jobid)
          const job = t.rows.get(held.jobid)
          if (job === undefined || (liveOnly && job.ended === "cancelled")) continue
          if (held.lease !== undefined && job.lease !== held.lease) {
            if (job.ended === null) fenced.push(held.jobid)
            continue
          }
          t.rows.delete(held.jobid)
          if (job.uniqkey !== null) t.unique.delete(uniqueIdentity(job.funcname, job.uniqkey))
          deleted++
        }
        return [{ deleted, fenced }, t]
      }))

    /** A live row held under the job's token (or any live row for a job without one), or why not. */
    const holds = (t: Table, held: HeldRow): Row | "missing" | "fenced" => {
      const job = t.rows.get(held.jobid)
      if (job === undefined || job.ended === "cancelled") return "missing"
      if (held.lease !== undefined && job.lease !== held.lease) return job.ended === null ? "fenced" : "missing"
      return job
    }

    const claimDue: ShardBackend["claimDue"] = (now, limit, leaseUntil, token, exclude, maxBytes, only) =>
      guard(Ref.modify(table, (t): [ReadonlyArray<StoredJob>, Table] => {
        const excluded = new Set(exclude)
        const candidates = [...t.rows.values()]
          .filter((j) => j.runAfter <= now && !excluded.has(j.funcname) && (only === undefined || j.funcname === only))
          .sort((a, b) =>
            priorityValue(b.priority) - priorityValue(a.priority) || a.runAfter - b.runAfter || a.jobid - b.jobid
          )
          .slice(0, limit)
        // As the SQL backends: while the args fit the budget, and always the first.
        const due: Array<Row> = []
        let total = 0
        for (const job of candidates) {
          if (due.length > 0 && total + job.arg.byteLength > maxBytes) break
          total += job.arg.byteLength
          due.push(job)
        }
        // As the SQL backends: the row's token while no heartbeat was seen, else this claim's.
        const claimed = due.map((job): StoredJob => {
          const lease = job.lease !== undefined && job.heartbeatAt === null ? job.lease : token
          t.rows.set(job.jobid, { ...job, runAfter: leaseUntil, leasedUntil: leaseUntil, lease, heartbeatAt: null })
          // The stored trace context too (migration 7's column, as the SQL claims read it).
          return job.traceparent === undefined
            ? { ...visible(job), lease }
            : { ...visible(job), lease, traceparent: job.traceparent }
        })
        return [claimed, t]
      }))

    /** The function's leased jobs: Job.jobState's `dispatched` and `running`, as the SQL shards count them. */
    const leasedIn = (t: Table, funcname: string, now: number) => {
      let n = 0
      for (const job of t.rows.values()) {
        if (job.funcname !== funcname) continue
        const state = stateOf(job, now)
        if (state === "dispatched" || state === "running") n++
      }
      return n
    }

    /** One lock per function, as the SQL shards' row lock on its control row. */
    const functionLocks = new Map<string, Effect.Semaphore>()
    const functionLock = (funcname: string) => {
      let lock = functionLocks.get(funcname)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        functionLocks.set(funcname, lock)
      }
      return lock
    }

    const claimCapped: ShardBackend["claimCapped"] = (
      now,
      funcname,
      cap,
      limit,
      leaseUntil,
      token,
      maxBytes,
      elsewhere
    ) =>
      functionLock(funcname).withPermits(1)(Effect.gen(function*() {
        yield* guard(Effect.void)
        const others = yield* elsewhere
        const here = leasedIn(yield* Ref.get(table), funcname, now)
        const room = Math.min(limit, cap - here - others)
        return room <= 0 ? [] : yield* claimDue(now, room, leaseUntil, token, [], maxBytes, funcname)
      }))

    const counts = (now: number) =>
      guard(Effect.map(Ref.get(table), (t) => {
        const byFunc = new Map<string, { -readonly [K in keyof FunctionCounts]: FunctionCounts[K] }>()
        for (const job of t.rows.values()) {
          const c = byFunc.get(job.funcname) ?? {
            dbid,
            funcname: job.funcname,
            due: 0,
            scheduled: 0,
            retrying: 0,
            dispatched: 0,
            running: 0,
            never: 0,
            dead: 0,
            cancelled: 0,
            oldestDue: null
          }
          const state = stateOf(job, now)
          c[state]++
          if (state === "due" && (c.oldestDue === null || job.runAfter < c.oldestDue)) c.oldestDue = job.runAfter
          byFunc.set(job.funcname, c)
        }
        return [...byFunc].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, c]): FunctionCounts => c)
      }))

    const list = (q: ShardListQuery) =>
      guard(Effect.map(Ref.get(table), (t) => {
        const byRunAfter = q.order === "runAfter"
        const afterCursor = (j: StoredJob) =>
          byRunAfter
            ? q.afterRunAfter === undefined || j.runAfter > q.afterRunAfter ||
              (j.runAfter === q.afterRunAfter && j.jobid > (q.afterJobid ?? 0))
            : q.afterJobid === undefined || j.jobid > q.afterJobid
        return [...t.rows.values()]
          .filter((j) =>
            afterCursor(j) &&
            (q.funcname === undefined || j.funcname === q.funcname) &&
            (q.uniqkeyContains === undefined || (j.uniqkey !== null && j.uniqkey.includes(q.uniqkeyContains))) &&
            (q.state === undefined || stateOf(j, q.now) === q.state)
          )
          .sort((a, b) => (byRunAfter ? a.runAfter - b.runAfter : 0) || a.jobid - b.jobid)
          .slice(0, q.limit)
          .map(visible)
      }))

    // Flow control's tables: each operation one synchronous step, as atomic as the SQL transactions.
    const controls = new Map<string, FunctionControl>()
    const buckets = new Map<string, Bucket>()
    const schedules = new Map<string, ScheduleRow>()
    const flow: FlowBackend = {
      controls: guard(Effect.sync(() => [...controls.values()])),
      setControl: (funcname, patch) =>
        guard(Effect.sync(() => {
          const next = patched(funcname, controls.get(funcname), patch)
          if (next === undefined) controls.delete(funcname)
          else controls.set(funcname, next)
          return next
        })),
      takeTokens: (funcname, rate, nowMs, want) =>
        guard(Effect.sync(() => {
          const { bucket, taken } = takeTokens(buckets.get(funcname), rate, nowMs, want)
          buckets.set(funcname, bucket)
          return taken
        })),
      bucket: (funcname) => guard(Effect.sync(() => Option.fromNullable(buckets.get(funcname)))),
      schedules: guard(Effect.sync(() => [...schedules.values()].sort((a, b) => (a.name < b.name ? -1 : 1)))),
      putSchedule: (row) => guard(Effect.sync(() => void schedules.set(row.name, row))),
      removeSchedule: (name) => guard(Effect.sync(() => schedules.delete(name))),
      advanceSchedule: (name, expected, next, jobs) =>
        Effect.zipRight(
          guard(Effect.void),
          Effect.suspend((): Effect.Effect<boolean, ShardUnreached> => {
            const row = schedules.get(name)
            if (row === undefined || row.nextSlot !== expected) return Effect.succeed(false)
            schedules.set(name, { ...row, nextSlot: next })
            return Effect.as(insert(jobs), true)
          })
        )
    }

    /** The rows among `jobids` still on one of `leases` (a dispatcher's own), as the SQL shard's `run_after IN`. */
    const onLease = (t: Table, jobids: ReadonlyArray<number>, leases: ReadonlyArray<number>) => {
      const ours = new Set(leases)
      return [...new Set(jobids)].flatMap((id) => {
        const job = t.rows.get(id)
        return job !== undefined && ours.has(job.runAfter) ? [job] : []
      })
    }

    const onLeases: ShardBackend["onLeases"] = (leases, lo, hi) =>
      guard(Effect.map(Ref.get(table), (t) => {
        const ours = new Set(leases)
        return [...t.rows.values()].flatMap((job) =>
          job.jobid >= lo && job.jobid <= hi && ours.has(job.runAfter)
            ? [{ jobid: job.jobid, runAfter: job.runAfter }]
            : []
        )
      }))

    const extendLeases: ShardBackend["extendLeases"] = (jobids, leases, leaseUntil) =>
      guard(Ref.modify(table, (t): [ReadonlyArray<number>, Table] => {
        const held = onLease(t, jobids, leases)
        for (const job of held) t.rows.set(job.jobid, { ...job, runAfter: leaseUntil, leasedUntil: leaseUntil })
        return [held.map((j) => j.jobid), t]
      }))

    const releaseLeases: ShardBackend["releaseLeases"] = (jobids, leases, now, cutoff) =>
      guard(Ref.modify(table, (t): [number, Table] => {
        // Heartbeats (migration 4) hold a job its worker runs: the same rule as HELD_BY_HEARTBEAT.
        const free = onLease(t, jobids, leases).filter((job) => (job.heartbeatAt ?? 0) < cutoff)
        for (const job of free) {
          t.rows.set(job.jobid, { ...job, runAfter: now, leasedUntil: null })
        }
        return [free.length, t]
      }))

    return {
      dbid,
      flow,
      flowPriority: guard(Effect.succeed(true)),
      leased: (funcname, now) => guard(Effect.map(Ref.get(table), (t) => leasedIn(t, funcname, now))),
      claimCapped,
      withFunctionLock: (funcname, now, body) =>
        functionLock(funcname).withPermits(1)(
          Effect.flatMap(guard(Ref.get(table)), (t) => body(leasedIn(t, funcname, now)))
        ),
      maxArgBytes: guard(Effect.succeed(Number.MAX_SAFE_INTEGER)),
      insert,
      claimDue,
      onLeases,
      extendLeases,
      releaseLeases,
      setRunAfter: (jobids, runAfter, error) =>
        update(jobids, (j) => ({
          ...j,
          runAfter,
          leasedUntil: null,
          lease: undefined,
          heartbeatAt: null,
          ...(error === undefined ? {} : {
            lastError: error.text,
            lastErrorAt: error.at,
            lastErrorAttempt: Math.min(j.failcount + 1, FAILCOUNT_MAX)
          })
        })),
      remove,
      recordThroughput: (minute, _slot, completed, failed) =>
        guard(Effect.sync(() => {
          const m = minutes.get(minute) ?? { completed: 0, failed: 0 }
          minutes.set(minute, { completed: m.completed + completed, failed: m.failed + failed })
        })),
      throughput: (sinceMinute, pruneBefore) =>
        guard(Effect.sync(() => {
          if (pruneBefore !== undefined) { for (const m of [...minutes.keys()]) if (m < pruneBefore) minutes.delete(m) }
          return Option.some(
            [...minutes].filter(([m]) => m >= sinceMinute).sort(([a], [b]) => a - b).map(([minute, c]) => ({
              minute,
              ...c
            }))
          )
        })),
      reschedule: (held, runAfter, failcount) =>
        guard(Ref.modify(table, (t): [RescheduleOutcome, Table] => {
          const job = holds(t, held)
          if (typeof job === "string") return [job, t]
          t.rows.set(held.jobid, {
            ...job,
            runAfter,
            failcount,
            leasedUntil: null,
            lease: undefined,
            heartbeatAt: null
          })
          return ["rescheduled", t]
        })),
      fail: (held, r) =>
        guard(Ref.modify(table, (t): [FailOutcome, Table] => {
          // A late failure must not revive a cancelled job, nor one leased again since.
          const job = holds(t, held)
          if (typeof job === "string") return [job, t]
          t.rows.set(held.jobid, {
            ...job,
            runAfter: r.dead ? NEVER : r.runAfter,
            failcount: r.failcount,
            leasedUntil: null,
            lease: undefined,
            heartbeatAt: null,
            ...(r.error === undefined
              ? {}
              : { lastError: r.error, lastErrorAt: r.at, lastErrorAttempt: r.failcount }),
            ended: r.dead ? "dead" : null,
            endedAt: r.dead ? r.at : null
          })
          return [r.dead ? "dead" : "retrying", t]
        })),
      heartbeat: (jobs, now, leaseUntil) =>
        guard(Ref.modify(table, (t): [HeartbeatResult, Table] => {
          let extended = 0
          const cancelled: Array<number> = []
          const lost: Array<number> = []
          for (const held of jobs) {
            if (held.lease === undefined) continue
            const job = t.rows.get(held.jobid)
            if (job === undefined || job.lease !== held.lease || job.ended === "dead") lost.push(held.jobid)
            else if (job.ended === "cancelled") cancelled.push(held.jobid)
            else {
              extended++
              t.rows.set(held.jobid, { ...job, heartbeatAt: now, runAfter: leaseUntil, leasedUntil: leaseUntil })
            }
          }
          return [{ extended, cancelled, lost }, t]
        })),
      cancel: (jobid, at) =>
        guard(Ref.modify(table, (t): [ShardCancelOutcome, Table] => {
          const job = t.rows.get(jobid)
          if (job === undefined) return ["missing", t]
          if (job.ended !== null) return [job.ended === "dead" ? "dead" : "already-cancelled", t]
          t.rows.set(jobid, { ...job, ended: "cancelled", endedAt: at, runAfter: NEVER, leasedUntil: null })
          return ["cancelled", t]
        })),
      retryNever: (funcname, now) =>
        Effect.flatMap(guard(Ref.get(table)), (t) =>
          update(
            [...t.rows.values()]
              .filter((j) => j.funcname === funcname && j.runAfter >= NEVER && j.ended === null)
              .map((j) => j.jobid),
            (j) => ({ ...j, runAfter: now, leasedUntil: null })
          )),
      retryDead: (target, now) =>
        Effect.flatMap(guard(Ref.get(table)), (t) =>
          update(
            [...t.rows.values()]
              .filter((j) =>
                j.ended === "dead" && (target.jobid === undefined || j.jobid === target.jobid) &&
                (target.funcname === undefined || j.funcname === target.funcname)
              )
              .map((j) => j.jobid),
            (j) => ({ ...j, runAfter: now, failcount: 0, ended: null, endedAt: null, leasedUntil: null })
          )),
      purgeEnded: (ended, before, funcname) =>
        Effect.flatMap(guard(Ref.get(table)), (t) =>
          Effect.map(
            remove(
              [...t.rows.values()]
                .filter((j) =>
                  j.ended === ended && j.endedAt !== null && j.endedAt < before &&
                  (funcname === undefined || j.funcname === funcname)
                )
                .map((j) => ({ jobid: j.jobid }))
            ),
            (r) => r.deleted
          )),
      counts,
      list,
      get: (jobid) =>
        guard(Effect.map(Ref.get(table), (t) => Option.map(Option.fromNullable(t.rows.get(jobid)), visible))),
      jobLife: guard(Effect.succeed(true)),
      leases: guard(Effect.succeed(true)),
      setDown: (value) => Ref.set(down, value)
    }
  })
