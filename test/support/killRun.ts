// One component of a deployment SIGKILLed mid-run, and what became of every job: the kill tests
// (test/roles/kills.e2e.test.ts) and the recovery figure (bench/recovery.ts) run it. The deployment
// is MariaDB (a fresh database), a gearmand process (or `garivini up`'s embedded job server), the
// built `garivini` command's roles, and worker processes (the chaos soak's worker: the worker
// helper with a handler that writes a ledger line when a job starts and when it is done).
import { join } from "node:path"
import { Duration, Effect, ExecutionStrategy, Exit, Scope } from "effect"
import type { ChildProcess } from "node:child_process"
import { bundle, ensureBuilt, garivini, spawnProcess, type Proc } from "../../bench/processes.js"
import { encodeArg, readLedger, type LedgerEntry } from "../../chaos/ledger.js"
import * as Client from "../../src/roles/Client.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { exited, freePort, startGearmand } from "../../src/testing/gearmandProcess.js"
import { tempDir } from "./files.js"
import { adminQuery, mysqlHost, mysqlPort, testShards } from "./mysql.js"

/** What is killed: the QueueRunner process, gearmand, one of the worker processes, or `garivini up`. */
export type Component = "queue-runner" | "gearmand" | "worker" | "up"
export const COMPONENTS: ReadonlyArray<Component> = ["queue-runner", "gearmand", "worker", "up"]

export interface KillRunOptions {
  readonly component: Component
  /** Jobs stored before the roles start (default 400). */
  readonly jobs?: number
  /** How long each handler runs, ms (default 50). */
  readonly sleepMs?: number
  /** The dispatchers' `--lease`, seconds. */
  readonly lease: number
  /** The kill comes once this many jobs are done (default a fifth of them). */
  readonly killAfterDone?: number
  /** Worker processes (default 2), each running this many jobs at once (default 8). */
  readonly workers?: number
  readonly concurrency?: number
  /** Hang guard: how long the run may take after the kill (default 3 leases + 60 s). */
  readonly timeout?: Duration.DurationInput
  /** Progress lines (default none). */
  readonly say?: (line: string) => void
}

export interface KillReport {
  readonly component: Component
  readonly lease: number
  readonly jobs: number
  /** Jobs with a `done` in the ledger. */
  readonly ran: number
  /** Rows left in the database at the end. */
  readonly leftStored: number
  /** Rows stored at the kill: jobs not finished then (dispatched, running, or still due). */
  readonly unfinishedAtKill: number
  /**
   * Jobs running at the kill: of those unfinished, started before the killed process was gone
   * (running, or done with its DELETE not yet committed), and jobs done from 50 ms before the
   * rows were read (their WORK_COMPLETE may not have reached gearmand).
   */
  readonly runningAtKill: ReadonlyArray<string>
  /** Jobs started more than once. */
  readonly twice: ReadonlyArray<string>
  /** Jobs started more than once that were not running at the kill (should be none), with their starts (ms from the kill, worker). */
  readonly unexplained: ReadonlyArray<string>
  /**
   * Seconds from the kill to the last job unfinished at the kill starting again (its first start
   * once the killed process was gone); 0 when none had to start again.
   */
  readonly recoverySeconds: number
  /** Seconds from the kill to the last job done. */
  readonly drainedSeconds: number
}

const FUNCTION = "killed"

/** A process of the run that can be killed and started again, each life in a scope of its own. */
const restartable = (launch: Effect.Effect<number, unknown, Scope.Scope>) =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    let life: { readonly scope: Scope.CloseableScope; readonly pid: number } | undefined
    const start = Effect.gen(function*() {
      const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
      const pid = yield* Scope.extend(launch, scope).pipe(Effect.orDie)
      life = { scope, pid }
    })
    const kill = Effect.suspend(() => {
      const l = life
      life = undefined
      if (l === undefined) return Effect.void
      try {
        process.kill(l.pid, "SIGKILL")
      } catch {
        // already gone
      }
      return Scope.close(l.scope, Exit.void)
    })
    yield* start
    return { start, kill }
  })

/** A process from `spawnProcess`, ready once it printed `ready`. */
const procLaunch = (spawn: Effect.Effect<Proc, unknown, Scope.Scope>, ready: string) =>
  Effect.gen(function*() {
    const proc = yield* spawn
    yield* proc.waitFor(ready, "60 seconds")
    return proc.pid
  })

/** gearmand on `port` for a life (SIGKILLed when the life's scope closes). */
const gearmandLaunch = (port: number) =>
  Effect.acquireRelease(
    startGearmand(port),
    (child: ChildProcess) => Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), exited(child))
  ).pipe(Effect.map((child) => child.pid ?? 0))

const rowsOf = (database: string) =>
  Effect.map(
    adminQuery(`SELECT jobid FROM \`${database}\`.job`),
    ([rows]) => new Set((rows as ReadonlyArray<Record<string, unknown>>).map((r) => `1:${String(r["jobid"])}`))
  )

/** Runs the deployment, kills `component` once a fifth of the jobs are done, restarts it (a worker is not), and waits for every job. */
export const killRun = (options: KillRunOptions): Effect.Effect<KillReport, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const jobs = options.jobs ?? 400
    const sleepMs = options.sleepMs ?? 50
    const killAfter = options.killAfterDone ?? Math.floor(jobs / 5)
    const workerCount = options.workers ?? 2
    const say = options.say ?? (() => {})
    yield* ensureBuilt
    const [shard] = yield* testShards(1)
    const db = `mysql://root@${mysqlHost}:${mysqlPort}/${shard!.database}`
    const dir = yield* tempDir("garivini-kill-")
    const port = yield* freePort
    const server = `127.0.0.1:${port}`

    yield* Client.insertJobs(
      Array.from({ length: jobs }, (_, i) => ({
        funcname: FUNCTION,
        arg: encodeArg({ id: `j${i}`, kind: "kill", sleepMs, failUntil: 0 })
      }))
    ).pipe(Effect.provide(StorageLayers.layer({ shards: [shard!] })), Effect.scoped)

    const lease = String(options.lease)
    const jobServer = options.component === "up"
      ? undefined
      : yield* restartable(gearmandLaunch(port))
    const dispatcher = yield* restartable(
      options.component === "up"
        ? procLaunch(
          garivini("up", [
            "up",
            "--db",
            db,
            "--listen",
            server,
            "--web-listen",
            "off",
            "--lease",
            lease,
            "--batch-run-sleep",
            "0.1",
            "--controller-timeout",
            String(Math.max(1, options.lease - 1))
          ]),
          "clients and workers connect to"
        )
        : procLaunch(
          garivini("queue-runner", [
            "queue-runner",
            "--db",
            db,
            "--gearmand",
            server,
            "--lease",
            lease,
            "--batch-run-sleep",
            "0.1"
          ]),
          "running queue-runner on"
        )
    )
    const script = yield* bundle("../chaos/worker.ts")
    const workers = yield* Effect.forEach(
      Array.from({ length: workerCount }, (_, i) => i + 1),
      (i) =>
        restartable(procLaunch(
          spawnProcess(`worker ${i}`, process.execPath, [script], {
            env: {
              CHAOS_GEARMAND: server,
              CHAOS_DB: db,
              CHAOS_FUNCTION: FUNCTION,
              CHAOS_LEDGER: join(dir, `worker-${i}.ledger`),
              CHAOS_NAME: `worker ${i}`,
              CHAOS_CONCURRENCY: String(options.concurrency ?? 8)
            }
          }),
          `"event":"ready"`
        )),
      { concurrency: "unbounded" }
    )
    const ledger = () => readLedger(dir).entries
    const doneIds = (entries: ReadonlyArray<LedgerEntry>) =>
      new Set(entries.filter((e) => e.ev === "done").map((e) => e.id))
    yield* waitFor(Effect.sync(() => doneIds(ledger()).size >= killAfter), "60 seconds", `${killAfter} jobs done`)

    const snapshotAt = Date.now()
    const unfinished = yield* rowsOf(shard!.database)
    const killedAt = Date.now()
    say(`${options.component}: SIGKILL with ${unfinished.size} job(s) unfinished`)
    switch (options.component) {
      case "queue-runner":
      case "up":
        yield* dispatcher.kill
        break
      case "gearmand":
        yield* jobServer!.kill
        break
      case "worker":
        yield* workers[0]!.kill
        break
    }
    // The process is gone by now: a job a worker started until then was running at the kill.
    const deadAt = Date.now()
    if (options.component === "queue-runner" || options.component === "up") yield* dispatcher.start
    if (options.component === "gearmand") yield* jobServer!.start
    const timeout = options.timeout ?? Duration.seconds(3 * options.lease + 60)
    yield* waitFor(
      Effect.map(
        Effect.zip(rowsOf(shard!.database), Effect.sync(() => doneIds(ledger()).size)),
        ([rows, done]) => rows.size === 0 && done === jobs
      ),
      timeout,
      "every job to run and its row to be deleted"
    )
    const entries = ledger()
    const starts = new Map<string, Array<number>>()
    for (const e of entries) if (e.ev === "start") starts.set(e.h, [...(starts.get(e.h) ?? []), e.t])
    // Also a job done just before the kill (from 50 ms before the rows were read): its WORK_COMPLETE
    // may not have left the worker, or reached gearmand, which then hands it out again.
    const doneAt = new Map<string, number>()
    for (const e of entries) if (e.ev === "done" && !doneAt.has(e.h)) doneAt.set(e.h, e.t)
    const lateDone = [...doneAt].filter(([h, t]) => t >= snapshotAt - 50 && !unfinished.has(h)).map(([h]) => h)
    const runningAtKill = [...unfinished, ...lateDone].filter((h) => (starts.get(h) ?? []).some((t) => t < deadAt))
    const running = new Set(runningAtKill)
    const twice = [...starts].filter(([, ts]) => ts.length > 1).map(([h]) => h)
    let recovery = 0
    for (const h of unfinished) {
      const after = (starts.get(h) ?? []).filter((t) => t >= deadAt)
      if (after.length > 0) recovery = Math.max(recovery, Math.min(...after) - killedAt)
    }
    const lastDone = Math.max(...entries.filter((e) => e.ev === "done").map((e) => e.t))
    return {
      component: options.component,
      lease: options.lease,
      jobs,
      ran: doneIds(entries).size,
      leftStored: (yield* rowsOf(shard!.database)).size,
      unfinishedAtKill: unfinished.size,
      runningAtKill,
      twice,
      unexplained: twice.filter((h) => !running.has(h)).map((h) =>
        `${h} started at ${
          entries.filter((e) => e.h === h && e.ev !== "fail").map((e) => `${e.ev} ${e.t - killedAt} ms (${e.w})`).join(
            ", "
          )
        }`
      ),
      recoverySeconds: recovery / 1000,
      drainedSeconds: Math.max(0, lastDone - killedAt) / 1000
    }
  })

const waitFor = (check: Effect.Effect<boolean>, timeout: Duration.DurationInput, what: string) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep("50 millis")
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`timed out waiting for ${what} (${Duration.format(Duration.decode(timeout))})`)
    })
  )
