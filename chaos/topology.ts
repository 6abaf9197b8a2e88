// The chaos soak's deployment on 127.0.0.1: two MariaDB shards (the system server with a scratch
// database, and a second `mariadbd` on a data directory of its own), two gearmand, a TCP proxy in
// front of each shard and each job server, and every process as a `Member` that a fault can kill,
// freeze or stop and that comes back when told. Each member lives in a scope of its own forked
// from the run's, so a restart closes only its old process, and the run's end closes them all.
import { execFile, execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Data, Duration, Effect, Exit, ExecutionStrategy, Redacted, Schedule, Scope } from "effect"
import * as Mysql from "mysql2/promise"
import type { ShardConfig } from "../src/storage/targets.js"
import { exited, startGearmand } from "../src/testing/gearmandProcess.js"
import { migrate } from "../src/storage/migrate.js"
import { makeProxy } from "../test/support/proxy.js"
import { decodeArg } from "./ledger.js"
import type { Proxy } from "../test/support/proxy.js"
import type { Proc } from "../bench/processes.js"
import { spawnProcess } from "../bench/processes.js"

/** The soak could not set up, run or check something. */
export class ChaosError
  extends Data.TaggedError("ChaosError")<{ readonly message: string; readonly cause?: unknown }>
{}

export type Kind =
  | "mariadb"
  | "gearmand"
  | "queue-runner"
  | "injector"
  | "controller"
  | "worker"
  | "driver"
  | "perl-worker"

/** A process of the deployment that faults act on. */
export interface Member {
  readonly name: string
  readonly kind: Kind
  /** Its current pid, if it runs. */
  readonly pid: () => number | undefined
  /** Starts it (again) if it does not run; waits until it is ready. */
  readonly start: Effect.Effect<void, ChaosError>
  /** SIGKILL, and wait for the exit. */
  readonly kill: Effect.Effect<void>
  /** A graceful stop (SIGTERM, SIGKILL after its grace), waiting for the exit. */
  readonly stop: Effect.Effect<void>
  /** SIGSTOP / SIGCONT. */
  readonly freeze: Effect.Effect<void>
  readonly thaw: Effect.Effect<void>
}

/** The second MariaDB's disk (a tmpfs): `fill` leaves it no free byte, `free` gives the space back. */
export interface Disk {
  readonly fill: Effect.Effect<void, ChaosError>
  readonly free: Effect.Effect<void>
}

/** Every pid the run started, to check at the end that none outlived it. */
export const startedPids = new Set<number>()

const signal = (pid: number | undefined, sig: NodeJS.Signals) =>
  Effect.sync(() => {
    if (pid === undefined) return
    try {
      process.kill(pid, sig)
    } catch {
      // already gone
    }
  })

/**
 * Live processes whose environment holds `CHAOS_RUN=<run>` (every process the run spawns gets it,
 * and the Driver's children inherit it): what a run leaves behind.
 */
export const processesOfRun = (run: string): ReadonlyArray<number> => {
  const marker = `CHAOS_RUN=${run}\0`
  const found: Array<number> = []
  let pids: Array<string> = []
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d))
  } catch {
    return found
  }
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, "latin1").includes(marker)) found.push(Number(pid))
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

/** Whether `pid` is a live process. */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * A member whose process `launch` starts inside a scope of its own (closed to stop it). The
 * launch returns the pid and waits until the process is ready.
 */
export const member = (
  name: string,
  kind: Kind,
  launch: Effect.Effect<number, ChaosError, Scope.Scope>
): Effect.Effect<Member, ChaosError, Scope.Scope> =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    let current: { readonly scope: Scope.CloseableScope; readonly pid: number } | undefined
    const lock = yield* Effect.makeSemaphore(1)
    const close = Effect.suspend(() => {
      const c = current
      current = undefined
      return c === undefined ? Effect.void : Scope.close(c.scope, Exit.void)
    })
    const start = lock.withPermits(1)(Effect.suspend(() => {
      if (current !== undefined && isAlive(current.pid)) return Effect.void
      return Effect.gen(function*() {
        yield* close
        const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
        const pid = yield* launch.pipe(
          Scope.extend(scope),
          Effect.tapErrorCause(() => Scope.close(scope, Exit.void))
        )
        startedPids.add(pid)
        // Runs first when the scope closes: a frozen process must be able to take its SIGTERM.
        yield* Scope.addFinalizer(scope, signal(pid, "SIGCONT"))
        current = { scope, pid }
      })
    }))
    const self: Member = {
      name,
      kind,
      pid: () => current?.pid,
      start,
      kill: lock.withPermits(1)(Effect.suspend(() => Effect.zipRight(signal(current?.pid, "SIGKILL"), close))),
      stop: lock.withPermits(1)(close),
      freeze: Effect.suspend(() => signal(current?.pid, "SIGSTOP")),
      thaw: Effect.suspend(() => signal(current?.pid, "SIGCONT"))
    }
    yield* start
    return self
  })

/** A child process from bench/processes.ts as a member's launch: waits for `ready` in its output. */
export const procLaunch = (
  spawn: Effect.Effect<Proc, { readonly message: string }, Scope.Scope>,
  ready: string | undefined,
  timeout: Duration.DurationInput = "60 seconds"
): Effect.Effect<number, ChaosError, Scope.Scope> =>
  Effect.gen(function*() {
    const proc = yield* spawn
    if (ready !== undefined) yield* proc.waitFor(ready, timeout)
    return proc.pid
  }).pipe(Effect.mapError((e) => new ChaosError({ message: e.message, cause: e })))

const canQuery = (port: number) =>
  Effect.tryPromise({
    try: async () => {
      const conn = await Mysql.createConnection({ host: "127.0.0.1", port, user: "root", connectTimeout: 1000 })
      await conn.query("SELECT 1")
      await conn.end()
    },
    catch: (e) => new ChaosError({ message: `MariaDB on port ${port}: ${String(e)}`, cause: e })
  })

/** Waits until MariaDB on `port` answers a query. */
export const mariadbReady = (port: number, timeout: Duration.DurationInput) =>
  canQuery(port).pipe(
    Effect.retry(Schedule.spaced("200 millis")),
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new ChaosError({ message: `MariaDB on port ${port} did not answer within ${String(timeout)}` })
    })
  )

const run = (command: string, args: ReadonlyArray<string>) =>
  Effect.async<void, ChaosError>((resume) => {
    execFile(command, [...args], { timeout: 120_000 }, (error, _stdout, stderr) =>
      resume(
        error === null
          ? Effect.void
          : Effect.fail(new ChaosError({ message: `${command}: ${error.message} ${stderr.slice(-500)}`, cause: error }))
      ))
  })

/**
 * A second MariaDB server on `port`, its data directory in a temporary directory made and removed
 * with the scope (the server is stopped first: members close before this finalizer runs).
 */
export const secondMariadb = (port: number, env: Readonly<Record<string, string>>, logTo: string) =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "garivini-chaos-mariadb-"))),
      (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
    )
    // A tmpfs of its own for the data directory when this process may mount one (root): then a
    // full disk can be simulated by filling it. Unmounted after the server stopped (scopes close
    // in reverse order).
    const fsDir = join(dir, "fs")
    const mounted = yield* Effect.acquireRelease(
      Effect.sync(() => {
        mkdirSync(fsDir)
        try {
          execFileSync("mount", ["-t", "tmpfs", "-o", "size=256m", "tmpfs", fsDir], { stdio: "ignore" })
          return true
        } catch {
          return false
        }
      }),
      (m) =>
        Effect.sync(() => {
          if (!m) return
          try {
            execFileSync("umount", [fsDir], { stdio: "ignore" })
          } catch {
            try {
              execFileSync("umount", ["-l", fsDir], { stdio: "ignore" })
            } catch {
              // left mounted: reported by the leak check's caller through the directory removal
            }
          }
        })
    )
    const datadir = join(fsDir, "data")
    const filler = join(fsDir, "filler")
    const disk: Disk | undefined = mounted
      ? {
        fill: Effect.try({
          try: () => {
            const stats = statfsSync(fsDir)
            const free = stats.bavail * stats.bsize
            if (free > 4096) execFileSync("fallocate", ["-l", String(free - 4096), filler], { stdio: "ignore" })
          },
          catch: (e) => new ChaosError({ message: `filling the shard's disk: ${String(e)}`, cause: e })
        }),
        free: Effect.sync(() => rmSync(filler, { force: true }))
      }
      : undefined
    const asRoot = process.getuid?.() === 0 ? ["--user=root"] : []
    yield* run("mariadb-install-db", [
      "--no-defaults",
      ...asRoot,
      `--datadir=${datadir}`,
      "--auth-root-authentication-method=normal",
      "--skip-test-db"
    ])
    const server = yield* member(
      "mariadb 2",
      "mariadb",
      Effect.gen(function*() {
        const proc = yield* procLaunch(
          spawnProcess(
            "mariadbd (shard 2)",
            "mariadbd",
            [
              "--no-defaults",
              ...asRoot,
              `--datadir=${datadir}`,
              `--port=${port}`,
              "--bind-address=127.0.0.1",
              `--socket=${join(dir, "mariadb.sock")}`,
              `--pid-file=${join(dir, "mariadb.pid")}`,
              // Only this run reaches it, on loopback, and only for its lifetime.
              "--skip-grant-tables",
              "--skip-name-resolve",
              "--innodb-buffer-pool-size=32M",
              "--innodb-log-file-size=16M",
              "--max-connections=500"
            ],
            { grace: Duration.seconds(30), env, logTo }
          ),
          undefined
        )
        yield* mariadbReady(port, "60 seconds")
        return proc
      })
    )
    return { server, disk }
  })

/** A shard over `database` on the server at `port`, created (migrated) now, dropped with the scope when `drop`. */
export const scratchShard = (id: number, port: number, database: string, drop: boolean) =>
  Effect.gen(function*() {
    const shard: ShardConfig = {
      id,
      host: "127.0.0.1",
      port,
      database,
      user: "root",
      password: Redacted.make("")
    }
    const dropDb = Effect.tryPromise({
      try: async () => {
        const conn = await Mysql.createConnection({ host: "127.0.0.1", port, user: "root" })
        await conn.query(`DROP DATABASE IF EXISTS \`${database}\``)
        await conn.end()
      },
      catch: (e) => new ChaosError({ message: `DROP DATABASE ${database} on port ${port}: ${String(e)}`, cause: e })
    })
    yield* dropDb
    yield* Effect.acquireRelease(
      migrate([shard]).pipe(
        Effect.mapError((e) =>
          new ChaosError({ message: `creating ${database} on port ${port}: ${e.message}`, cause: e })
        )
      ),
      () => drop ? Effect.catchAll(dropDb, (e) => Effect.logWarning(e.message)) : Effect.void
    )
    return shard
  })

/** Runs `f` on a connection of its own to a shard (straight to the server, not through a proxy). */
const onShard = <A>(shard: ShardConfig, what: string, f: (conn: Mysql.Connection) => Promise<A>) =>
  Effect.tryPromise({
    try: async () => {
      const conn = await Mysql.createConnection({
        host: shard.host,
        port: shard.port,
        user: shard.user,
        database: shard.database,
        connectTimeout: 2000
      })
      try {
        return await f(conn)
      } finally {
        await conn.end()
      }
    },
    catch: (e) => new ChaosError({ message: `${what} shard ${shard.id}: ${String(e)}`, cause: e })
  })

/** Rows left in a shard's job table. */
export const rowsLeft = (shard: ShardConfig) =>
  onShard(shard, "counting rows in", async (conn) => {
    const [rows] = await conn.query<Array<Mysql.RowDataPacket>>("SELECT COUNT(*) AS n FROM job")
    return Number(rows[0]?.["n"] ?? 0)
  })

/** A row left in a shard at the end: the soak's id (from the arg), when it would run and its failcount. */
export interface LeftRow {
  readonly shard: number
  readonly jobid: number
  readonly id: string
  readonly flag: string
  readonly runAfter: number
  readonly failcount: number
}

/** The rows left in a shard's job table. */
export const rowsOf = (shard: ShardConfig) =>
  onShard(shard, "reading the rows left in", async (conn): Promise<ReadonlyArray<LeftRow>> => {
    const [rows] = await conn.query<Array<Mysql.RowDataPacket>>(
      "SELECT jobid, arg, flag, run_after, failcount FROM job ORDER BY jobid LIMIT 1000"
    )
    return rows.map((r) => {
      const arg = decodeArg(Buffer.isBuffer(r["arg"]) ? r["arg"].toString("utf8") : String(r["arg"]))
      return {
        shard: shard.id,
        jobid: Number(r["jobid"]),
        id: arg._tag === "Right" ? arg.right.id : "?",
        flag: String(r["flag"]),
        runAfter: Number(r["run_after"]),
        failcount: Number(r["failcount"])
      }
    })
  })

/** Deletes a row behind the roles' back (the harness's self-test: a job lost on purpose). */
export const deleteRow = (shard: ShardConfig, jobid: number) =>
  onShard(shard, `deleting job ${jobid} of`, async (conn) => {
    await conn.query("DELETE FROM job WHERE jobid = ?", [jobid])
  })

/** A gearmand on `port` as a member (restarted on the same port). */
export const gearmand = (name: string, port: number) =>
  member(
    name,
    "gearmand",
    Effect.acquireRelease(
      startGearmand(port).pipe(Effect.mapError((e) => new ChaosError({ message: e.message, cause: e }))),
      (child) => Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), exited(child))
    ).pipe(Effect.map((child) => child.pid ?? 0))
  )

/** A proxy in front of `port`, with the name faults report. */
export interface NamedProxy {
  readonly name: string
  readonly proxy: Proxy
  readonly address: string
}

export const proxy = (name: string, port: number) =>
  Effect.map(
    makeProxy({ host: "127.0.0.1", port }),
    (p): NamedProxy => ({ name, proxy: p, address: `127.0.0.1:${p.port}` })
  )
