// The chaos soak's load: a steady mix of stored jobs (single and batched inserts through the
// Client), inject_jobs calls from two Gearman clients, delayed jobs, unique jobs (each key offered
// three times while its job waits), jobs that fail before succeeding on retry, and jobs that run
// for seconds. Every job carries a `ChaosArg` with an id; a job is *accepted* once a call that
// stored it returned successfully. A call that failed or timed out is unacknowledged: its job may
// or may not be stored, so it counts only if it runs.
import { Duration, Effect, Schema } from "effect"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Client from "../src/roles/Client.js"
import { INJECT_FUNCTION } from "../src/roles/Injector.js"
import type { Random } from "./faults.js"
import { encodeArg } from "./ledger.js"

export const FUNCTION = "chaos_work"
export const PERL_FUNCTION = "chaos_perl"

export type JobKind = "single" | "batch" | "inject" | "perl" | "delayed" | "unique" | "flaky" | "slow"

export interface Accepted {
  readonly id: string
  readonly kind: JobKind
  /** ms since the epoch: when the call that stored it returned. */
  readonly acceptedAt: number
  /** When it may run at the earliest, and when it may succeed (after failing until then). */
  readonly dueAt: number
  readonly sleepMs: number
}

/** What the load offered and what was acknowledged. */
export interface Book {
  readonly accepted: Map<string, Accepted>
  /** Ids of calls that failed or timed out (their jobs may have been stored). */
  readonly unacknowledged: Set<string>
  /** Per unique key: how many calls stored a new job (not a duplicate). */
  readonly uniqueCreated: Map<string, number>
  /** Calls that failed, by kind of call, and the first few errors of each kind. */
  readonly callErrors: Map<string, number>
  readonly callErrorSamples: Map<string, Array<string>>
}

export const makeBook = (): Book => ({
  accepted: new Map(),
  unacknowledged: new Set(),
  uniqueCreated: new Map(),
  callErrors: new Map(),
  callErrorSamples: new Map()
})

const errorText = (e: unknown): string => {
  if (typeof e === "object" && e !== null) {
    const tag = "_tag" in e ? String(e._tag) : "error"
    const message = "message" in e ? String(e.message) : JSON.stringify(e)
    return `${tag}: ${message}`.slice(0, 300)
  }
  return String(e).slice(0, 300)
}

const CALL_TIMEOUT = Duration.seconds(10)

const InjectAnswer = Schema.parseJson(Schema.Union(
  Schema.Struct({ duplicate: Schema.optional(Schema.Boolean) }),
  Schema.Array(Schema.Struct({ duplicate: Schema.optional(Schema.Boolean) }))
))
const decodeInjectAnswer = Schema.decodeUnknownOption(InjectAnswer)

interface Planned {
  readonly id: string
  readonly kind: JobKind
  readonly delayS: number
  readonly failMs: number
  readonly sleepMs: number
  readonly uniqkey?: string
}

const argOf = (p: Planned, now: number) =>
  encodeArg({ id: p.id, kind: p.kind, sleepMs: p.sleepMs, failUntil: p.failMs > 0 ? now + p.failMs : 0 })

/** Runs the load until `until` (ms since the epoch); needs Storage and Gearman over the proxied servers. */
export const runLoad = (rng: Random, book: Book, until: number, perl: boolean) =>
  Effect.gen(function*() {
    const gearman = yield* Gearman.Gearman
    let seq = 0
    const nextId = (prefix: string) => `${prefix}${++seq}`

    const settle = (what: string, planned: ReadonlyArray<Planned>, t0: number) =>
    (
      exit: { readonly ok: true; readonly duplicates?: ReadonlyArray<boolean> } | {
        readonly ok: false
        readonly error: unknown
      }
    ) =>
      Effect.sync(() => {
        const now = Date.now()
        if (!exit.ok) {
          book.callErrors.set(what, (book.callErrors.get(what) ?? 0) + 1)
          const samples = book.callErrorSamples.get(what) ?? []
          if (samples.length < 3) samples.push(`${new Date(now).toISOString().slice(11, 23)} ${errorText(exit.error)}`)
          book.callErrorSamples.set(what, samples)
          for (const p of planned) if (!book.accepted.has(p.id)) book.unacknowledged.add(p.id)
          return
        }
        planned.forEach((p, i) => {
          if (p.uniqkey !== undefined && exit.duplicates?.[i] === false)
            book.uniqueCreated.set(p.uniqkey, (book.uniqueCreated.get(p.uniqkey) ?? 0) + 1)
          const previous = book.accepted.get(p.id)
          if (previous !== undefined) return
          book.unacknowledged.delete(p.id)
          book.accepted.set(p.id, {
            id: p.id,
            kind: p.kind,
            acceptedAt: now,
            dueAt: Math.max(t0 + p.delayS * 1000, t0 + p.failMs),
            sleepMs: p.sleepMs
          })
        })
      })

    const insert = (what: string, planned: ReadonlyArray<Planned>) =>
      Effect.suspend(() => {
        const t0 = Date.now()
        const specs: Array<Client.JobSpec> = planned.map((p) => ({
          funcname: FUNCTION,
          arg: argOf(p, t0),
          uniqkey: p.uniqkey,
          runAt: p.delayS > 0 ? `+${p.delayS}` : undefined
        }))
        return Client.insertJobs(specs).pipe(
          Effect.timeout(CALL_TIMEOUT),
          Effect.matchEffect({
            onFailure: (error) => settle(what, planned, t0)({ ok: false, error }),
            onSuccess: (outcomes) =>
              settle(what, planned, t0)({ ok: true, duplicates: outcomes.map((o) => o.duplicate) })
          })
        )
      })

    const inject = (what: string, planned: ReadonlyArray<Planned>, fn: string) =>
      Effect.suspend(() => {
        const t0 = Date.now()
        const specs = planned.map((p) => ({
          funcname: fn,
          arg: argOf(p, t0),
          ...(p.uniqkey === undefined ? {} : { uniqkey: p.uniqkey }),
          ...(p.delayS > 0 ? { run_after: p.delayS } : {})
        }))
        const body = JSON.stringify(specs.length === 1 ? specs[0] : specs)
        return gearman.submit(INJECT_FUNCTION, body, { timeout: CALL_TIMEOUT }).pipe(
          Effect.timeout(Duration.sum(CALL_TIMEOUT, Duration.seconds(1))),
          Effect.matchEffect({
            onFailure: (error) => settle(what, planned, t0)({ ok: false, error }),
            onSuccess: (result) => {
              const answer = decodeInjectAnswer(result.data.toString("utf8"))
              const duplicates = answer._tag === "None"
                ? undefined
                : Array.isArray(answer.value)
                ? answer.value.map((a) => a.duplicate === true)
                : [(answer.value as { readonly duplicate?: boolean }).duplicate === true]
              return settle(what, planned, t0)(duplicates === undefined ? { ok: true } : { ok: true, duplicates })
            }
          })
        )
      })

    /** Calls `body` every `everyMs` until the deadline (a slow call delays the next one). */
    const every = <R>(everyMs: number, body: Effect.Effect<void, never, R>) =>
      Effect.gen(function*() {
        while (Date.now() < until) {
          const t0 = Date.now()
          yield* body
          const wait = everyMs - (Date.now() - t0)
          if (wait > 0) yield* Effect.sleep(wait)
        }
      })

    const plain = (kind: JobKind, prefix: string): Planned => ({
      id: nextId(prefix),
      kind,
      delayS: 0,
      failMs: 0,
      sleepMs: 0
    })

    // Single inserts, some of them delayed or failing first: three clients at ~5/s each.
    const singles = every(
      200,
      Effect.suspend(() => {
        const roll = rng.next()
        const p: Planned = roll < 0.2
          ? { ...plain("delayed", "d"), delayS: rng.int(2, 8) }
          : roll < 0.35
          ? { ...plain("flaky", "f"), failMs: rng.int(500, 2500) }
          : plain("single", "s")
        return insert("insert", [p])
      })
    )
    // Batched inserts: 20 jobs in one call, every second.
    const batches = every(
      1000,
      Effect.suspend(() => insert("insert batch", Array.from({ length: 20 }, () => plain("batch", "b"))))
    )
    // inject_jobs: two clients at ~6/s each; one call in five for the Perl worker when it runs,
    // one in ten a batch of five.
    const injects = every(
      160,
      Effect.suspend(() => {
        const roll = rng.next()
        if (perl && roll < 0.2) return inject("inject_jobs (perl)", [plain("perl", "p")], PERL_FUNCTION)
        if (roll > 0.9)
          return inject("inject_jobs batch", Array.from({ length: 5 }, () => plain("inject", "i")), FUNCTION)
        return inject("inject_jobs", [plain("inject", "i")], FUNCTION)
      })
    )
    // Unique jobs: a key every 1.5 s, offered three times (two inserts, one inject) while its job
    // waits 3 s: it must run once.
    const uniques = every(
      1500,
      Effect.suspend(() => {
        const id = nextId("u")
        const p: Planned = { id, kind: "unique", delayS: 3, failMs: 0, sleepMs: 0, uniqkey: id }
        return Effect.all([
          insert("insert unique", [p]),
          insert("insert unique", [p]),
          inject("inject_jobs unique", [p], FUNCTION)
        ], {
          concurrency: "unbounded",
          discard: true
        })
      })
    )
    // Jobs that run for seconds: one every 2 s, 1.5–4 s long.
    const slow = every(
      2000,
      Effect.suspend(() => insert("insert slow", [{ ...plain("slow", "l"), sleepMs: rng.int(1500, 4000) }]))
    )

    yield* Effect.all([singles, singles, singles, batches, injects, injects, uniques, slow], {
      concurrency: "unbounded",
      discard: true
    })
  })
