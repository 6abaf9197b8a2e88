/**
 * Every default of the roles and the storage under them, defined once: the roles, the CLI's
 * help texts and checks, and the docs' tables read these. One table per role. Values that must
 * agree (the Injector's lease is the QueueRunner's, and the heartbeats' too) are written as
 * references, so they cannot drift apart.
 */
import { Duration } from "effect"
import { DEFAULT_MAX_ATTEMPTS } from "../Job.js"

/**
 * How long a dispatched job is leased before it is dispatched again when nobody holds it: the
 * dispatcher extends it while its job server connection holds, and the worker helper and the
 * Controller while the job runs (docs/job-life.md), so it only bounds how long a job stranded by
 * a crash waits.
 */
const lease = Duration.seconds(30)
/** Queued jobs of a function in gearmand above which more stay in the database (0 disables). */
const queueWatermarkDepth = 4000

export const queueRunner = {
  /** Largest batch claimed per shard and round. */
  batchMaxSize: 1000,
  /** Bytes of args claimed per shard and round (a larger job still goes, alone). */
  batchMaxBytes: 64 * 1024 * 1024,
  /** A round starts at most this often. */
  batchRunSleep: Duration.seconds(1),
  queueWatermarkDepth,
  lease,
  /** How long the overflow of a round that crossed the watermark waits (the original: 60 s). */
  deferFor: Duration.zero,
  /**
   * The longest wait between claims of a shard that fails them (the backoff's cap): a failed
   * connect to a dead server is cheap, and a shard that comes back should be seen within it.
   */
  shardRetryMax: Duration.seconds(2)
} as const

export const injector = {
  /** The QueueRunner's: it keeps the runner off injected jobs while their Controller runs them. */
  lease,
  queueWatermarkDepth,
  /** How often gearmand's queue depths are read, at most. */
  queueCheckInterval: Duration.seconds(2),
  /** Injects handled at once (one connection per job server carries them). */
  concurrency: 32,
  maxRequestJobs: 10_000,
  /** Under the 64 MiB packet limit. */
  maxRequestBytes: 32 * 1024 * 1024
} as const

export const controller = {
  /** Jobs run at once (one connection per job server carries them). */
  concurrency: 64,
  /**
   * How long the Controller waits for the real function. Not bound by the lease: its heartbeats
   * (and the Injector's held lease) keep the row while it waits.
   */
  timeout: Duration.seconds(900),
  /** Attempts before a job is dead: with the one-day backoff cap, about 19 days of retrying. */
  maxAttempts: DEFAULT_MAX_ATTEMPTS
} as const

export const heartbeat = {
  /**
   * How far each heartbeat moves a running job's lease (the worker helper's and the
   * Controller's): the dispatchers' lease, so a job whose worker died comes back as soon as a
   * dispatched one would.
   */
  lease,
  /** Heartbeats per lease: a stalled heartbeat or two still leaves the job held. */
  perLease: 3
} as const

export const storage = {
  /** How long a shard that failed a connect or query is avoided for new jobs. */
  coolOff: Duration.seconds(30),
  /**
   * How long an insert, claim, update, delete or lookup by id may wait for a MySQL server's
   * answer before its connection is closed (a stalled connection gives no error of its own).
   */
  statementTimeout: Duration.seconds(10),
  /**
   * How often a process writes its completed/failed counts per minute (the console's chart):
   * off the completion path, one upsert per shard and minute per interval at most.
   */
  throughputFlush: Duration.seconds(2)
} as const

export const driver = {
  consolePort: 47300,
  consoleHost: "127.0.0.1",
  /** Seconds between reads of gearmand's status (0 disables scaling). */
  interval: 5,
  /** Seconds a process above min may be idle before it drains. */
  maxIdleTime: 0,
  /** Seconds children get to finish their job when the Driver stops. */
  shutdownTimeout: 30,
  /** Processes a job may start per 250 ms tick; live processes per job; live processes in all. */
  limits: { startPerTick: 5, perJob: 100, total: 400 }
} as const

/** Where the roles, the Driver and the tools find a job server unless told. */
export const gearmand = "127.0.0.1:4730"

export const flow = {
  /** A dispatcher reads a shard's function controls (pause, rate limit) at most this often. */
  controlsRefresh: Duration.seconds(1),
  /** The schedule loop looks for due slots this often. */
  scheduleTick: Duration.seconds(1),
  /** A slot found due more than this late counts as missed (its schedule's `missed` policy decides). */
  scheduleGrace: Duration.seconds(2)
} as const
