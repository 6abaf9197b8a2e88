/**
 * The job: its stored row, its handle, the JSON a worker receives, the limits of the schema,
 * and the run-at language shared by insert, reschedule and the CLI.
 */
import { Clock, Duration, Effect, Either, ParseResult, Schema } from "effect"
import { InvalidJob, InvalidSchedule } from "./errors.js"
import { DEFAULT_MAX_FRAME, functionNameProblem } from "./protocol/gearman.js"
import { clip, quoteBounded } from "./text.js"
import { isTraceparent, traceparentProblem } from "./tracing/traceparent.js"

export { QUOTE_MAX_CHARS, quoteBounded } from "./text.js"

/** `reschedule(job, "never")`: 2^31 − 1 (2038-01-19), as the original; the row stays for inspection. */
export const NEVER = 2147483647
/** Largest value of the `run_after INT UNSIGNED` column. */
export const MAX_RUN_AFTER = 4294967295
export const FUNCNAME_MAX_CHARS = 200
export const UNIQKEY_MAX_CHARS = 255
export const COALESCE_MAX_CHARS = 255
/** MEDIUMBLOB holds at most 16 MiB − 1 bytes. */
export const ARG_MAX_BYTES = 16 * 1024 * 1024 - 1
/** `failcount` is TINYINT UNSIGNED. */
export const FAILCOUNT_MAX = 255

/**
 * The Gearman functions of Garivini's own roles (the Controller's and the Injector's). A job
 * under one of these names would make the Controller call itself: every slot would wait on a
 * nested call and the low-latency path would jam.
 */
export const RESERVED_FUNCTIONS: ReadonlySet<string> = new Set(["run_queued_job", "inject_jobs"])

/**
 * The largest worker JSON a stored job may need. A job is delivered in one Gearman packet (the
 * worker JSON plus a handle, the function name and a unique, at most a few hundred bytes), and
 * frames over DEFAULT_MAX_FRAME (64 MiB) are refused by our decoder: a job over this could be
 * dispatched again every lease and never run.
 */
export const WORKER_JSON_MAX_BYTES = DEFAULT_MAX_FRAME - 64 * 1024

export type JobFlag = "shim" | "controller"

/** Where a job lives: the shard (`dbid`) and its row id there (`jobid`). */
export interface StoredJobId {
  readonly dbid: number
  readonly jobid: number
}

/**
 * A stored job's priority (migration 0005): claims take higher ones first, and the job goes to
 * gearmand with the matching priority. Stored as 1, 0 (the column's default: Perl's inserts) and -1.
 */
export type JobPriority = "high" | "normal" | "low"
export const JOB_PRIORITIES: ReadonlyArray<JobPriority> = ["high", "normal", "low"]
export const priorityValue = (p: JobPriority | undefined): number => p === "high" ? 1 : p === "low" ? -1 : 0
/** The column's value as a priority: above 0 high, below low (a value Garivini never wrote stays in order). */
export const priorityOf = (n: number): JobPriority => n > 0 ? "high" : n < 0 ? "low" : "normal"

/** A job to store. `runAfter` is an absolute unix time (the Client resolves the run-at language). */
export interface NewJob {
  readonly funcname: string
  readonly arg?: Uint8Array | string | undefined
  readonly uniqkey?: string | null | undefined
  readonly coalesce?: string | null | undefined
  readonly runAfter: number
  readonly flag?: JobFlag | undefined
  /** Default normal. */
  readonly priority?: JobPriority | undefined
  /**
   * Stored already leased under this token until `runAfter` (the Injector's insert of a job it
   * dispatches at once): `lease_token` and `leased_until` written with the row (migration 4).
   */
  readonly lease?: string | undefined
  /**
   * The W3C traceparent of the trace the job belongs to (migration 7). When tracing is on, an
   * insert without one stores its own insert span's; given, it is validated and the insert span
   * continues it. Not stored on a database without the column.
   */
  readonly traceparent?: string | undefined
}

/** A NewJob that passed validation: text turned to bytes, absent keys made null. */
export interface ValidNewJob {
  readonly funcname: string
  readonly arg: Uint8Array
  readonly uniqkey: string | null
  readonly coalesce: string | null
  readonly runAfter: number
  readonly flag: JobFlag
  /** Present only when not normal (so a normal job's record is as it was before priorities). */
  readonly priority?: "high" | "low"
  /** See NewJob.lease; for a stored job, the token it was dispatched under (StoredJob). */
  readonly lease?: string | undefined
  /** See NewJob.traceparent; for a stored job, the trace it continues (the worker JSON's `"traceparent"`). */
  readonly traceparent?: string | undefined
}

/** A stored job as the roles see it: where it is, its columns, and `arg` as the blob's bytes. */
export interface StoredJob extends StoredJobId, ValidNewJob {
  readonly failcount: number
  /**
   * The token of the lease it was dispatched under (migration 4; the worker JSON's `"lease"`):
   * our completions apply only while the row still holds it. Absent: dispatched by a Perl
   * QueueRunner or to a database without the column; completions then apply by jobid alone.
   */
  readonly lease?: string | undefined
}

/** A lease token as the worker JSON may carry it: 16 bytes as 32 lowercase hex characters. */
export const LEASE_TOKEN = /^[0-9a-f]{32}$/

/** What `insert` says of each job: where it is, and whether it was dropped as a duplicate. */
export interface InsertOutcome {
  readonly handle: StoredJobId
  /** True when `(funcname, uniqkey)` was already stored; `handle` is then the existing job's. */
  readonly duplicate: boolean
}

/**
 * The identity the `UNIQUE (funcname, uniqkey)` index sees. The schema's `utf8mb4_bin`
 * collation is PAD SPACE, so trailing spaces do not distinguish keys; every layer compares
 * keys through this function to agree with the database.
 */
export const uniqueIdentity = (funcname: string, uniqkey: string): string =>
  `${funcname.replace(/ +$/, "")}\u0000${uniqkey.replace(/ +$/, "")}`

const charLength = (s: string): number => {
  let n = 0
  for (const _ of s) n++
  return n
}

const utf8 = (s: string): Uint8Array => Buffer.from(s, "utf8")

/** A Buffer over the same memory as `bytes` (no copy): for Buffer-only APIs (toString, drivers). */
export const bytesView = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * Why `name` cannot be a job's function, or undefined if it can: missing, too long, holding
 * whitespace, control characters or unpaired surrogates (Gearman's rule: they forge admin lines
 * or split packets), or reserved. Pure: also for rows already stored.
 */
export const funcnameProblem = (name: string): string | undefined => {
  if (typeof name !== "string" || name.length === 0) return "funcname is missing"
  if (charLength(name) > FUNCNAME_MAX_CHARS)
    return `funcname ${quoteBounded(name)} is longer than ${FUNCNAME_MAX_CHARS} characters`
  const chars = functionNameProblem(name)
  if (chars !== undefined) return `funcname: ${chars}`
  if (RESERVED_FUNCTIONS.has(name)) return `funcname ${JSON.stringify(name)} is reserved for Garivini's own roles`
  return undefined
}

/**
 * Why `key` cannot be a job's uniqkey, or undefined if it can: NUL ends a Gearman argument (the
 * job would never be submitted whole), and unpaired surrogates are not UTF-8.
 */
export const uniqkeyProblem = (key: string): string | undefined => {
  if (typeof key !== "string") return "uniqkey is not text"
  // One pass (this runs for every unique job inserted): code points, NUL, unpaired surrogates.
  let chars = 0
  for (let i = 0; i < key.length; i++, chars++) {
    const c = key.charCodeAt(i)
    if (c === 0) return `uniqkey ${quoteBounded(key)} holds NUL at index ${i}`
    if ((c & 0xf800) !== 0xd800) continue
    if (c <= 0xdbff && (key.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++
    else return `uniqkey ${quoteBounded(key)} holds an unpaired surrogate at index ${i}`
  }
  return chars > UNIQKEY_MAX_CHARS
    ? `uniqkey ${quoteBounded(key)} is longer than ${UNIQKEY_MAX_CHARS} characters`
    : undefined
}

/** UTF-8 bytes of `s` as a JSON string literal (quotes included), as JSON.stringify writes it. */
const jsonStringBytes = (s: string): number => {
  let n = 2
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20) n += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6
    else if (c === 0x22 || c === 0x5c) n += 2
    else if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4
      i++
    } else if (c >= 0xd800 && c <= 0xdfff) n += 6 // unpaired: written as \uDXXX
    else n += 3
  }
  return n
}

/** Bytes each blob byte takes in the worker JSON (`arg` is a string of code points 0–255). */
const ARG_BYTE_JSON: Uint8Array = Uint8Array.from(
  { length: 256 },
  (_, b) => jsonStringBytes(String.fromCharCode(b)) - 2
)
/** The most one blob byte can take (a control byte: `\u00XX`). */
const ARG_BYTE_JSON_MAX = 6

const argJsonBytes = (arg: Uint8Array): number => {
  let n = 2
  for (let i = 0; i < arg.length; i++) n += ARG_BYTE_JSON[arg[i]!]!
  return n
}

const nullableJsonBytes = (s: string | null): number => s === null ? 4 : jsonStringBytes(s)

/** The worker JSON's bytes but for its values: keys, quotes of `flag`, commas and braces. */
const WORKER_JSON_FRAME_BYTES = Buffer.byteLength(
  JSON.stringify({
    jobid: 0,
    dbid: 0,
    funcname: "",
    arg: "",
    uniqkey: "",
    coalesce: "",
    run_after: 0,
    flag: "",
    failcount: 0
  })
) - 4 - 5 * 2

/**
 * The size in bytes of `encodeWorkerJson(job)`, computed without building it (a linear scan of
 * `arg`): what the packet that delivers the job carries.
 */
export const workerJsonBytes = (job: StoredJob): number =>
  WORKER_JSON_FRAME_BYTES + String(job.jobid).length + String(job.dbid).length + jsonStringBytes(job.funcname) +
  argJsonBytes(job.arg) + nullableJsonBytes(job.uniqkey) + nullableJsonBytes(job.coalesce) +
  String(job.runAfter).length + jsonStringBytes(job.flag) + String(job.failcount).length

/** A stored job's worker JSON at its largest: ids of any size, the highest failcount. */
const largestWorkerJsonBytes = (job: ValidNewJob): number =>
  workerJsonBytes({ ...job, dbid: Number.MAX_SAFE_INTEGER, jobid: Number.MAX_SAFE_INTEGER, failcount: FAILCOUNT_MAX })

/** Checks a job against the schema's limits; text `arg` is stored as UTF-8. */
export const validateNewJob = (job: NewJob, index?: number): Either.Either<ValidNewJob, InvalidJob> => {
  const bad = (reason: string) => Either.left(new InvalidJob(index === undefined ? { reason } : { reason, index }))
  const funcnameBad = funcnameProblem(job.funcname)
  if (funcnameBad !== undefined) return bad(funcnameBad)
  const uniqkey = job.uniqkey === undefined || job.uniqkey === null || job.uniqkey === "" ? null : job.uniqkey
  const uniqkeyBad = uniqkey === null ? undefined : uniqkeyProblem(uniqkey)
  if (uniqkeyBad !== undefined) return bad(uniqkeyBad)
  const coalesce = job.coalesce === undefined || job.coalesce === null || job.coalesce === "" ? null : job.coalesce
  if (coalesce !== null && charLength(coalesce) > COALESCE_MAX_CHARS) {
    return bad(`coalesce is longer than ${COALESCE_MAX_CHARS} characters`)
  }
  const arg = job.arg === undefined ? new Uint8Array(0) : typeof job.arg === "string" ? utf8(job.arg) : job.arg
  if (arg.length > ARG_MAX_BYTES)
    return bad(`arg is ${arg.length} bytes, over the MEDIUMBLOB limit of ${ARG_MAX_BYTES}`)
  if (!Number.isSafeInteger(job.runAfter) || job.runAfter < 0 || job.runAfter > MAX_RUN_AFTER) {
    return bad(`run_after ${job.runAfter} is not a unix time in [0, ${MAX_RUN_AFTER}]`)
  }
  const flag = job.flag ?? "shim"
  if (flag !== "shim" && flag !== "controller")
    return bad(`flag ${JSON.stringify(flag)} is neither shim nor controller`)
  const priority = job.priority ?? "normal"
  if (!JOB_PRIORITIES.includes(priority)) {
    return bad(`priority ${JSON.stringify(priority)} is not one of ${JOB_PRIORITIES.join(", ")}`)
  }
  if (job.lease !== undefined && !LEASE_TOKEN.test(job.lease)) return bad("lease is not a lease token")
  if (job.traceparent !== undefined) {
    const problem = traceparentProblem(job.traceparent)
    if (problem !== undefined) return bad(problem)
  }
  // The common case (normal, no lease, no trace) stays one literal: this runs for every inserted job.
  const valid: ValidNewJob = priority === "normal" && job.lease === undefined && job.traceparent === undefined
    ? { funcname: job.funcname, arg, uniqkey, coalesce, runAfter: job.runAfter, flag }
    : {
      funcname: job.funcname,
      arg,
      uniqkey,
      coalesce,
      runAfter: job.runAfter,
      flag,
      ...(priority === "normal" ? {} : { priority }),
      ...(job.lease === undefined ? {} : { lease: job.lease }),
      ...(job.traceparent === undefined ? {} : { traceparent: job.traceparent })
    }
  // Only an arg big enough to need it is scanned: every byte takes at most 6 in the JSON.
  if (arg.length * ARG_BYTE_JSON_MAX + 64 * 1024 > WORKER_JSON_MAX_BYTES) {
    const size = largestWorkerJsonBytes(valid)
    if (size > WORKER_JSON_MAX_BYTES) {
      return bad(
        `arg of ${arg.length} bytes makes a worker JSON of up to ${size} bytes, over the ${WORKER_JSON_MAX_BYTES} a Gearman packet can deliver (control bytes take 6 bytes each, bytes over 127 take 2)`
      )
    }
  }
  return Either.right(valid)
}

/** A handle's dbid and jobid must be positive safe integers (the Perl client treats 0 as missing). */
export const validateHandle = (handle: StoredJobId): Either.Either<StoredJobId, InvalidJob> =>
  Number.isSafeInteger(handle.dbid) && handle.dbid > 0 && Number.isSafeInteger(handle.jobid) && handle.jobid > 0
    ? Either.right(handle)
    : Either.left(
      new InvalidJob({ reason: `malformed handle dbid=${String(handle.dbid)} jobid=${String(handle.jobid)}` })
    )

/** `dbid:jobid`, the handle's text form (CLI, logs). */
export const formatHandle = (handle: StoredJobId): string => `${handle.dbid}:${handle.jobid}`

export const parseHandle = (text: string): Either.Either<StoredJobId, InvalidJob> => {
  const m = /^(\d+):(\d+)$/.exec(text.trim())
  return m === null
    ? Either.left(new InvalidJob({ reason: `handle ${JSON.stringify(text)} is not dbid:jobid` }))
    : validateHandle({ dbid: Number(m[1]), jobid: Number(m[2]) })
}

// ---------------------------------------------------------------------------------------------
// Schemas for what comes from outside: database rows and the worker JSON.

/** A non-negative integer given as a number or a numeric string (older DBD::mysql, Perl writers). */
export const LenientInt = Schema.transformOrFail(Schema.Union(Schema.Number, Schema.String), Schema.NonNegativeInt, {
  strict: true,
  decode: (input, _, ast) => {
    if (typeof input === "number") return ParseResult.succeed(input)
    const trimmed = input.trim()
    return /^\d+$/.test(trimmed) && Number.isSafeInteger(Number(trimmed))
      ? ParseResult.succeed(Number(trimmed))
      : ParseResult.fail(new ParseResult.Type(ast, input, `expected an integer, got ${JSON.stringify(input)}`))
  },
  encode: (n) => ParseResult.succeed(n)
})

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0

/** `flag` as stored: NULL or '' (the Perl client stores NULL) mean `shim`. */
export const LenientFlag = Schema.transformOrFail(
  Schema.NullishOr(Schema.String),
  Schema.Literal("shim", "controller"),
  {
    strict: true,
    decode: (input, _, ast) =>
      input === null || input === undefined || input === "" || input === "shim"
        ? ParseResult.succeed("shim" as const)
        : input === "controller"
        ? ParseResult.succeed("controller" as const)
        : ParseResult.fail(new ParseResult.Type(ast, input, `unknown flag ${JSON.stringify(input)}`)),
    encode: (flag) => ParseResult.succeed(flag)
  }
)

/** A row of the `job` table as mysql2 returns it (`arg` as a Buffer). */
export const JobRow = Schema.Struct({
  jobid: LenientInt,
  funcname: Schema.String,
  arg: Schema.NullOr(Schema.Uint8ArrayFromSelf),
  uniqkey: Schema.NullOr(Schema.String),
  coalesce: Schema.NullOr(Schema.String),
  run_after: LenientInt,
  flag: LenientFlag,
  failcount: LenientInt
})
export type JobRow = typeof JobRow.Type

/**
 * A row in the shape both drivers return (numbers as numbers, `arg` as bytes or NULL, a known
 * flag), checked field by field without Schema: the QueueRunner decodes every row it claims, and
 * Schema's decoder was a quarter of what that process allocated. Anything else (numeric strings,
 * an empty or NULL flag, bad data) returns undefined and goes through the JobRow schema, which
 * also words the errors. The two agree on every row this accepts (test/storage/rows.test.ts).
 */
export const fastJobRow = (dbid: number, row: unknown): StoredJob | undefined => {
  if (typeof row !== "object" || row === null) return undefined
  // An object, checked above; each field is checked before use.
  const r = row as { readonly [key: string]: unknown }
  const { arg, coalesce, failcount, flag, funcname, jobid, run_after, uniqkey } = r
  if (!isCount(jobid) || !isCount(run_after) || !isCount(failcount) || typeof funcname !== "string") return undefined
  if (!(arg === null || arg instanceof Uint8Array)) return undefined
  if (!(uniqkey === null || typeof uniqkey === "string") || !(coalesce === null || typeof coalesce === "string"))
    return undefined
  if (flag !== "shim" && flag !== "controller") return undefined
  return {
    dbid,
    jobid,
    funcname,
    arg: arg ?? new Uint8Array(0),
    uniqkey,
    coalesce,
    runAfter: run_after,
    flag,
    failcount
  }
}

export const jobFromRow = (dbid: number, row: JobRow): StoredJob => ({
  dbid,
  jobid: row.jobid,
  funcname: row.funcname,
  arg: row.arg ?? new Uint8Array(0),
  uniqkey: row.uniqkey,
  coalesce: row.coalesce,
  runAfter: row.run_after,
  flag: row.flag,
  failcount: row.failcount
})

/**
 * `arg` in the worker JSON: a string whose code points 0–255 are the blob's bytes (what the Perl
 * QueueRunner sends). A string with higher code points can only be text (a Perl Injector passes
 * the client's own string), so it is taken as UTF-8.
 */
const argFromWire = (s: string): Uint8Array => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 255) return utf8(s)
  return Buffer.from(s, "latin1")
}

export const ArgFromWire = Schema.transform(Schema.String, Schema.Uint8ArrayFromSelf, {
  strict: true,
  decode: argFromWire,
  encode: (bytes) => bytesView(bytes).toString("latin1")
})

/** A W3C traceparent (version 00, ids not all zero). */
export const Traceparent = Schema.String.pipe(
  Schema.filter((s) => traceparentProblem(s) ?? true, { identifier: "Traceparent" })
)

/**
 * The JSON a worker receives: the row plus `dbid`. Decoded leniently where Perl writers differ
 * (numbers as strings, NULL/empty flag, missing optional keys, extra keys).
 */
export const WorkerJob = Schema.Struct({
  jobid: LenientInt,
  dbid: LenientInt,
  funcname: Schema.String,
  arg: Schema.optionalWith(ArgFromWire, { default: () => new Uint8Array(0), nullable: true }),
  uniqkey: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
  coalesce: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
  run_after: Schema.optionalWith(LenientInt, { default: () => 0 }),
  flag: Schema.optionalWith(LenientFlag, { default: () => "shim" as const }),
  failcount: Schema.optionalWith(LenientInt, { default: () => 0 }),
  // Ours only (Perl writers never send it); null is no lease, as absent.
  lease: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.pattern(LEASE_TOKEN)))),
  // Ours only, sent when the dispatcher traces or the job stored one; null is none.
  traceparent: Schema.optional(Schema.NullOr(Traceparent))
})

// Synchronous decoding: this runs once per job on every worker's hot path.
const decodeWorkerJob = Schema.decodeUnknownEither(Schema.parseJson(WorkerJob))

const isOptionalText = (v: unknown): v is string | null | undefined =>
  v === undefined || v === null || typeof v === "string"

/**
 * The shape our QueueRunner and the Perl one send (numbers as numbers, a string arg, a known
 * flag), checked field by field without Schema: WorkerJob is the definition, this is its guard
 * for the usual payload (a few times faster, and it runs once per job on every worker:
 * docs/performance.md, "Worker JSON decoding"). Anything else — numeric strings, a NULL arg, an
 * empty flag, a malformed payload — returns undefined and goes to the Schema decoder, which also
 * words the errors. test/fuzz/workerJson.test.ts checks that the two agree.
 */
export const fastWorkerJob = (text: string): StoredJob | undefined => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined
  // A plain object, checked above; each field is checked before use.
  const o = parsed as { readonly [key: string]: unknown }
  const { arg, coalesce, dbid, failcount, flag, funcname, jobid, lease, run_after, traceparent, uniqkey } = o
  if (!isCount(jobid) || !isCount(dbid) || typeof funcname !== "string" || typeof arg !== "string") return undefined
  if (!(lease === undefined || (typeof lease === "string" && LEASE_TOKEN.test(lease)))) return undefined
  if (!(traceparent === undefined || isTraceparent(traceparent))) return undefined
  if (!isOptionalText(uniqkey) || !isOptionalText(coalesce)) return undefined
  if (!(run_after === undefined || isCount(run_after)) || !(failcount === undefined || isCount(failcount)))
    return undefined
  if (!(flag === undefined || flag === "shim" || flag === "controller")) return undefined
  return {
    dbid,
    jobid,
    funcname,
    arg: argFromWire(arg),
    uniqkey: uniqkey ?? null,
    coalesce: coalesce ?? null,
    runAfter: run_after ?? 0,
    flag: flag ?? "shim",
    failcount: failcount ?? 0,
    ...(lease === undefined ? {} : { lease }),
    ...(traceparent === undefined ? {} : { traceparent })
  }
}

/** Decodes the worker JSON into a Job; a malformed payload is a typed InvalidJob. */
export const decodeWorkerJson = (payload: string | Uint8Array): Either.Either<StoredJob, InvalidJob> => {
  const text = typeof payload === "string" ? payload : bytesView(payload).toString("utf8")
  const fast = fastWorkerJob(text)
  return fast !== undefined ? Either.right(fast) : decodeWorkerJsonWithSchema(text)
}

/** The Schema decoder of the worker JSON (every shape the original's writers produce). */
export const decodeWorkerJsonWithSchema = (text: string): Either.Either<StoredJob, InvalidJob> =>
  decodeWorkerJob(text).pipe(
    Either.map((w): StoredJob => ({
      dbid: w.dbid,
      jobid: w.jobid,
      funcname: w.funcname,
      arg: w.arg,
      uniqkey: w.uniqkey,
      coalesce: w.coalesce,
      runAfter: w.run_after,
      flag: w.flag,
      failcount: w.failcount,
      ...(w.lease === undefined || w.lease === null ? {} : { lease: w.lease }),
      ...(w.traceparent === undefined || w.traceparent === null ? {} : { traceparent: w.traceparent })
    })),
    Either.mapLeft((e) =>
      new InvalidJob({
        reason: `malformed worker JSON: ${clip(ParseResult.TreeFormatter.formatErrorSync(e), MAX_REJECTION_QUOTE)}`,
        cause: e
      })
    )
  )

/** Longest quote of a rejected payload in its reason (the formatter quotes the bad value whole). */
export const MAX_REJECTION_QUOTE = 1000

/** The worker JSON of a job, keys in the original's column order, then its lease token and traceparent if any. */
export const encodeWorkerJson = (job: StoredJob): string =>
  JSON.stringify({
    jobid: job.jobid,
    dbid: job.dbid,
    funcname: job.funcname,
    arg: bytesView(job.arg).toString("latin1"),
    uniqkey: job.uniqkey,
    coalesce: job.coalesce,
    run_after: job.runAfter,
    flag: job.flag,
    failcount: job.failcount,
    ...(job.lease === undefined ? {} : { lease: job.lease }),
    ...(job.traceparent === undefined ? {} : { traceparent: job.traceparent })
  })

// ---------------------------------------------------------------------------------------------
// The run-at language.

/**
 * When a job runs: `"never"` (2147483647), `"+N"` (N seconds from now), an absolute unix time
 * (number or digit string), or an Effect Duration from now.
 */
export type RunAt = "never" | `+${number}` | number | string | Duration.Duration

/** Resolves a run-at value against `nowSeconds` (unix seconds) to an absolute unix time. */
export const resolveRunAt = (input: RunAt, nowSeconds: number): Either.Either<number, InvalidSchedule> => {
  const bad = (reason: string) =>
    Either.left(
      new InvalidSchedule({ input: Duration.isDuration(input) ? Duration.format(input) : String(input), reason })
    )
  const inRange = (t: number) =>
    Number.isSafeInteger(t) && t >= 0 && t <= MAX_RUN_AFTER
      ? Either.right(t)
      : bad(`resolves to ${t}, outside the run_after column's range [0, ${MAX_RUN_AFTER}]`)
  if (Duration.isDuration(input)) {
    if (!Duration.isFinite(input)) return bad("an infinite duration; use \"never\"")
    return inRange(nowSeconds + Math.ceil(Duration.toMillis(input) / 1000))
  }
  if (typeof input === "number") {
    return Number.isInteger(input) ? inRange(input) : bad("not a whole number of seconds")
  }
  if (typeof input !== "string") return bad("not a run-at value")
  if (input === "never") return Either.right(NEVER)
  const relative = /^\+(\d+)$/.exec(input)
  if (relative !== null) return inRange(nowSeconds + Number(relative[1]))
  if (/^\d+$/.test(input)) return inRange(Number(input))
  return bad("expected \"never\", \"+N\" seconds, an absolute unix time or a Duration")
}

/** Now, in unix seconds, from Effect's Clock (so TestClock drives it). */
export const nowSeconds: Effect.Effect<number> = Effect.map(Clock.currentTimeMillis, (ms) => Math.floor(ms / 1000))

// ---------------------------------------------------------------------------------------------
// A job's life on record (migration 2, docs/job-life.md).

/** How a job ended while kept: its attempts used up (`dead`), or cancelled. */
export type JobEnd = "dead" | "cancelled"

/** The columns of migration 2 (all null on a v1 database, or for a job that never failed). */
export interface JobLife {
  /** The last failure's text, at most LAST_ERROR_MAX_CHARS characters. */
  readonly lastError: string | null
  readonly lastErrorAt: number | null
  /** The attempt that failure ended (1 = the first run). */
  readonly lastErrorAttempt: number | null
  readonly ended: JobEnd | null
  readonly endedAt: number | null
  /** The lease our claim wrote in run_after; equal to run_after while the job is dispatched. */
  readonly leasedUntil: number | null
  /** The last heartbeat of the worker running it (migration 4): set while it runs. */
  readonly heartbeatAt: number | null
}

/** A stored job with its life columns: what inspection (get, list) returns. */
export interface JobRecord extends StoredJob, JobLife {}

/** The life columns of a job that has none (a new job; every job of a v1 database). */
export const NO_LIFE: JobLife = {
  lastError: null,
  lastErrorAt: null,
  lastErrorAttempt: null,
  ended: null,
  endedAt: null,
  leasedUntil: null,
  heartbeatAt: null
}

/** What `jobs list --state`, `jobs show` and `status` tell apart. */
export const JOB_STATES = [
  "due",
  "scheduled",
  "retrying",
  "dispatched",
  "running",
  "never",
  "dead",
  "cancelled"
] as const
export type JobState = typeof JOB_STATES[number]

/**
 * A job's state at `now`, from its row (docs/job-life.md, "States"): the one definition; the SQL
 * filters of `list` and `counts` (storage/sql/statements.ts) say the same, and the storage
 * contract checks that they agree over rows of every state.
 */
export const jobState = (
  job: {
    readonly runAfter: number
    readonly failcount: number
    readonly ended?: JobEnd | null | undefined
    readonly leasedUntil?: number | null | undefined
    readonly heartbeatAt?: number | null | undefined
  },
  now: number
): JobState =>
  job.ended === "dead" || job.ended === "cancelled"
    ? job.ended
    : job.runAfter <= now
    ? "due"
    : job.runAfter >= NEVER
    ? "never"
    : job.leasedUntil === job.runAfter
    ? job.heartbeatAt === null || job.heartbeatAt === undefined ? "dispatched" : "running"
    : job.failcount > 0
    ? "retrying"
    : "scheduled"

/** Attempts a job gets unless its function says otherwise: with the one-day backoff cap, about 19 days. */
export const DEFAULT_MAX_ATTEMPTS = 25

/** The longest last error stored, in characters. */
export const LAST_ERROR_MAX_CHARS = 2000

/**
 * A failure's text as stored: control characters (but tab and newline) shown as `\uXXXX`,
 * unpaired surrogates replaced, cut to LAST_ERROR_MAX_CHARS code points (never inside a pair)
 * with a mark saying so. Safe to print on a terminal and to store as UTF-8.
 */
export const boundedError = (text: string): string => {
  const out: Array<string> = []
  const widths: Array<number> = []
  let chars = 0
  // By code points: a surrogate pair is one, so it is never cut in half.
  for (const ch of text) {
    const c = ch.codePointAt(0)!
    const shown = (c < 0x20 && c !== 0x09 && c !== 0x0a) || (c >= 0x7f && c < 0xa0)
      ? `\\u${c.toString(16).padStart(4, "0")}`
      : c >= 0xd800 && c <= 0xdfff
      ? "\ufffd"
      : ch
    const width = shown === ch ? 1 : shown.length
    if (chars + width > LAST_ERROR_MAX_CHARS) {
      // Over the bound: what fits beside the mark, and the mark.
      while (chars + 1 > LAST_ERROR_MAX_CHARS) {
        chars -= widths.pop()!
        out.pop()
      }
      return `${out.join("")}…`
    }
    chars += width
    out.push(shown)
    widths.push(width)
  }
  return out.join("")
}

/** The backoff of `failedJob`: `min(2^failcount * 60, 86400)` seconds, for the raised failcount. */
export const failureBackoffSeconds = (failcount: number): number => Math.min(2 ** Math.min(failcount, 31) * 60, 86400)
