/**
 * The leases a dispatcher (QueueRunner, Injector) holds for the jobs it handed to job servers
 * (docs/job-life.md, "Leases held while someone holds the job"). Per job-server connection it
 * remembers the jobs that connection accepted (dbid, jobid, the lease written). Every second it
 * forgets those no longer on their lease (completed, mostly: one read per shard whose cost
 * follows the rows still leased); every lease / 3 it extends the rest while the connection is
 * unbroken (gearmand holds them, and re-queues one whose worker dies), one UPDATE per 1,000 jobs;
 * when the connection breaks (gearmand died or restarted: what it held is gone), the jobs handed
 * there that no heartbeat holds are made due at once. A job leaves when a check or an extension
 * no longer finds it on its lease (completed, rescheduled, failed, cancelled, or leased again by
 * someone else), or when, held a whole lease already, its job server no longer knows its handle
 * (GET_STATUS): a row whose Gearman job ended without the row changing (its worker died between
 * WORK_COMPLETE and the DELETE, or a DELETE failed) is then left to its lease, as before.
 */
import { Clock, Duration, Effect, Queue, Schedule } from "effect"
import type { Scope } from "effect"
import { Gearman } from "../gearman/Gearman.js"
import type { GearmanJobHandle } from "../gearman/GearmanClient.js"
import type { StoredJobId } from "../Job.js"
import { Storage } from "../storage/Storage.js"
import type { HeldLease } from "../storage/Storage.js"
import { leasesExtended, leasesReleased } from "./metrics.js"
import type { MetricLabel } from "effect"

/** One job handed to a job server: where it went, and the leases its row may carry (the claim's second is not known to the ms). */
export interface Handed {
  readonly job: StoredJobId
  /** The `run_after` the claim (or the Injector's insert) wrote: the candidates, when the second it ran in is not known. */
  readonly leases: ReadonlyArray<number>
  /** The server that accepted it and the handle it gave (JOB_CREATED). */
  readonly handle: GearmanJobHandle
}

export interface HeldLeases {
  /** The current connection number of every server, read before a submit: pass it to `handed`. */
  readonly connections: () => ReadonlyMap<string, number | undefined>
  /**
   * Records jobs the job servers accepted. A job whose server's connection changed since
   * `before` (broken meanwhile: it may be lost with the server) is made due at once instead.
   */
  readonly handed: (
    jobs: ReadonlyArray<Handed>,
    before: ReadonlyMap<string, number | undefined>
  ) => Effect.Effect<void>
  /** Jobs held now (for tests and metrics). */
  readonly size: () => number
}

export interface HeldLeasesOptions {
  readonly leaseSeconds: number
  /** Metric tags of the dispatcher (role). */
  readonly tags: ReadonlyArray<MetricLabel.MetricLabel>
}

interface Entry {
  leases: ReadonlyArray<number>
  readonly handle: GearmanJobHandle
  /** Unix seconds when it was handed. */
  readonly since: number
}

/** A server's connection and the jobs it accepted: dbid → jobid → entry. */
interface Connection {
  readonly id: number
  readonly jobs: Map<number, Map<number, Entry>>
}

const heldOf = (jobs: Map<number, Entry>): Array<HeldLease> =>
  [...jobs].flatMap(([jobid, e]) => e.leases.map((lease) => ({ jobid, lease })))

/** The holder, its extension loop and its release fiber forked into the caller's scope. */
export const make = (options: HeldLeasesOptions): Effect.Effect<HeldLeases, never, Scope.Scope | Storage | Gearman> =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const gearman = yield* Gearman
    const lease = options.leaseSeconds
    const byServer = new Map<string, Connection>()
    const broken = yield* Queue.unbounded<{ readonly server: string; readonly jobs: Map<number, Map<number, Entry>> }>()

    /** Takes a server's set away (its connection broke) for the release fiber. */
    const drop = (server: string) => {
      const c = byServer.get(server)
      if (c === undefined) return
      byServer.delete(server)
      broken.unsafeOffer({ server, jobs: c.jobs })
    }
    const unsubscribe = gearman.onConnectionLost((server, id) => {
      if (byServer.get(server)?.id === id) drop(server)
    })
    yield* Effect.addFinalizer(() => Effect.sync(unsubscribe))

    const release = (server: string, jobs: Map<number, Map<number, Entry>>) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis.pipe(Effect.map((ms) => Math.floor(ms / 1000)))
        let freed = 0
        for (const [dbid, ids] of jobs) {
          if (ids.size === 0) continue
          freed += yield* storage.releaseLeases(dbid, heldOf(ids), now, lease).pipe(
            Effect.catchAll((e) =>
              Effect.as(
                Effect.logWarning(
                  `freeing ${ids.size} job(s) handed to ${server} failed; they wait their lease: ${e.message}`
                ),
                0
              )
            )
          )
        }
        leasesReleased.unsafeUpdate(freed, options.tags)
        if (freed > 0)
          yield* Effect.logInfo(`connection to ${server} broke: ${freed} job(s) handed there are due again`)
      })
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(broken), (b) => release(b.server, b.jobs))))

    /**
     * Jobs held a whole lease already whose job server no longer knows them (GET_STATUS, pipelined
     * on the connection) leave: their Gearman job ended though their row is still on the lease.
     */
    const forgetEnded = (now: number) =>
      Effect.forEach(
        [...byServer.values()],
        (c) =>
          Effect.forEach([...c.jobs.values()], (ids) =>
            Effect.forEach(
              [...ids].filter(([, e]) => now - e.since >= lease),
              ([jobid, e]) =>
                gearman.getStatus(e.handle).pipe(
                  Effect.map((status) => void (status.known || ids.delete(jobid))),
                  // Not asked (the connection broke meanwhile: seen by the next check): kept.
                  Effect.ignore
                ),
              { concurrency: "unbounded", discard: true }
            ), { discard: true }),
        { discard: true }
      )

    /** The sets of every unbroken connection, per shard (a broken one's set goes to `release`). */
    const perShard = () => {
      const shards = new Map<number, Array<Map<number, Entry>>>()
      for (const [server, c] of byServer) {
        if (gearman.connectionId(server) !== c.id) {
          drop(server)
          continue
        }
        for (const [dbid, ids] of c.jobs) {
          if (ids.size === 0) continue
          const sets = shards.get(dbid)
          if (sets === undefined) shards.set(dbid, [ids])
          else sets.push(ids)
        }
      }
      return shards
    }

    /**
     * Runs `step` on each shard's held jobs and keeps only those it returns. An entry handed again
     * meanwhile (a new object under its jobid) is kept: the step saw the old one.
     */
    const sweep = (
      what: string,
      step: (
        dbid: number,
        held: ReadonlyArray<HeldLease>
      ) => Effect.Effect<ReadonlyArray<number>, { readonly message: string }>,
      kept: (e: Entry) => void
    ) =>
      Effect.suspend(() =>
        Effect.forEach(perShard(), ([dbid, sets]) => {
          const seen = sets.map((ids) => new Map(ids))
          const held = seen.flatMap(heldOf)
          return step(dbid, held).pipe(
            Effect.map((ids) => {
              const found = new Set(ids)
              sets.forEach((ids, i) => {
                for (const [jobid, e] of seen[i]!) {
                  if (found.has(jobid)) kept(e)
                  else if (ids.get(jobid) === e) ids.delete(jobid)
                }
              })
              return found.size
            }),
            Effect.catchAll((e) =>
              Effect.as(Effect.logWarning(`${what} ${held.length} lease(s) failed; retried next time: ${e.message}`), 0)
            )
          )
        })
      ).pipe(Effect.map((counts) => counts.reduce((a, b) => a + b, 0)))

    /**
     * Forgets the jobs no longer on their lease (completed mostly): one read per shard through the
     * `run_after` index, so its cost follows the rows still leased, and the set stays small
     * between extensions.
     */
    const prune = sweep("checking", (dbid, held) => storage.leasesHeld(dbid, held), () => {})

    /** One extension: every job still held on an unbroken connection, one UPDATE per 1,000 jobs. */
    const extend = Effect.gen(function*() {
      const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      yield* forgetEnded(now)
      const until = now + lease
      const extended = yield* sweep("extending", (dbid, held) => storage.extendLeases(dbid, held, until), (e) => {
        e.leases = [until]
      })
      leasesExtended.unsafeUpdate(extended, options.tags)
    })

    // Pruned every second (or a third of the lease, if shorter); extended every third of the lease.
    const everyMs = Math.max(100, (lease * 1000) / 3)
    const tickMs = Math.min(everyMs, 1000)
    let lastExtension = yield* Clock.currentTimeMillis
    const tick = Effect.flatMap(Clock.currentTimeMillis, (nowMs) => {
      if (nowMs - lastExtension < everyMs - tickMs / 2) return Effect.asVoid(prune)
      lastExtension = nowMs
      return extend
    })
    yield* Effect.forkScoped(Effect.repeat(Effect.delay(tick, Duration.millis(tickMs)), Schedule.forever))

    const handed = (jobs: ReadonlyArray<Handed>, before: ReadonlyMap<string, number | undefined>) =>
      Effect.gen(function*() {
        if (jobs.length === 0) return
        const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
        const lost = new Map<string, Map<number, Map<number, Entry>>>()
        for (const { handle, job, leases } of jobs) {
          const server = handle.server
          const id = gearman.connectionId(server)
          const was = before.get(server)
          let target: Map<number, Map<number, Entry>>
          if (id === undefined || (was !== undefined && was !== id)) {
            // Its connection broke after the submit went out: free it like the others there.
            target = lost.get(server) ?? new Map()
            lost.set(server, target)
          } else {
            let c = byServer.get(server)
            if (c === undefined || c.id !== id) {
              if (c !== undefined) drop(server)
              c = { id, jobs: new Map() }
              byServer.set(server, c)
            }
            target = c.jobs
          }
          let ids = target.get(job.dbid)
          if (ids === undefined) {
            ids = new Map()
            target.set(job.dbid, ids)
          }
          ids.set(job.jobid, { leases, handle, since: now })
        }
        for (const [server, set] of lost) yield* release(server, set)
      })

    return {
      connections: () => new Map(gearman.servers.map((s) => [s, gearman.connectionId(s)] as const)),
      handed,
      size: () => {
        let n = 0
        for (const c of byServer.values()) for (const ids of c.jobs.values()) n += ids.size
        return n
      }
    }
  })
