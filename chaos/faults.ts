// The chaos soak's faults: a seeded sequence of kills, freezes, cut or stalled connections and a
// stopped shard server, one at a time with a pause between them, each recorded with the moment it
// began and the moment everything it touched was healthy again.
import { Effect } from "effect"
import type { Disk, Member, NamedProxy } from "./topology.js"

/** A seeded pseudo-random source (mulberry32): the same seed gives the same choices. */
export const random = (seed: number) => {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    /** An integer in [lo, hi]. */
    int: (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(next() * xs.length)]!
  }
}
export type Random = ReturnType<typeof random>

/** A fault as it happened: `kind` groups the table's rows ("kill queue-runner", "stall shard proxy"…). */
export interface Fault {
  readonly kind: string
  readonly target: string
  /** ms since the epoch. */
  readonly start: number
  readonly end: number
}

export interface Targets {
  readonly members: ReadonlyArray<Member>
  readonly shardProxies: ReadonlyArray<NamedProxy>
  readonly gearmanProxies: ReadonlyArray<NamedProxy>
  /** The MariaDB server the harness owns (it may be stopped); the system one is only reached through its proxy. */
  readonly ownShard: Member
  /** Its disk, when a full disk can be simulated and `--disk-full` asked for it. */
  readonly ownDisk: Disk | undefined
}

type Done = Omit<Fault, "start" | "end"> | undefined
type Action = (rng: Random, t: Targets, scale: number, busy: Set<string>) => Effect.Effect<Done, unknown>

const ms = (n: number) => Effect.sleep(n)

/**
 * Picks a target no other fault is acting on (several fault loops may run at once) and holds it
 * while `use` runs; no fault when every target is taken.
 */
const withTarget = <A>(
  rng: Random,
  busy: Set<string>,
  xs: ReadonlyArray<A>,
  name: (a: A) => string,
  use: (a: A) => Effect.Effect<Done, unknown>
): Effect.Effect<Done, unknown> =>
  Effect.suspend(() => {
    const free = xs.filter((x) => !busy.has(name(x)))
    if (free.length === 0) return Effect.succeed(undefined)
    const x = rng.pick(free)
    busy.add(name(x))
    return use(x).pipe(Effect.ensuring(Effect.sync(() => busy.delete(name(x)))))
  })

const kill: Action = (rng, t, _scale, busy) =>
  withTarget(rng, busy, t.members, (m) => m.name, (m) =>
    Effect.gen(function*() {
      yield* m.kill
      yield* ms(rng.int(300, 3000))
      yield* m.start
      return { kind: `kill ${m.kind}`, target: m.name }
    }))

const freeze: Action = (rng, t, _scale, busy) =>
  withTarget(rng, busy, t.members, (m) => m.name, (m) =>
    Effect.gen(function*() {
      yield* m.freeze
      yield* ms(rng.int(1000, 8000)).pipe(Effect.ensuring(m.thaw))
      return { kind: `freeze ${m.kind}`, target: m.name }
    }))

const proxies = (t: Targets) => [
  ...t.shardProxies.map((p) => ({ p, kind: "shard" })),
  ...t.gearmanProxies.map((p) => ({ p, kind: "gearmand" }))
]

const cut: Action = (rng, t, _scale, busy) =>
  withTarget(rng, busy, proxies(t), ({ p }) => p.name, ({ kind, p }) =>
    Effect.gen(function*() {
      yield* p.proxy.cutAll
      return { kind: `cut ${kind} connections`, target: p.name }
    }))

const stall: Action = (rng, t, _scale, busy) =>
  withTarget(rng, busy, proxies(t), ({ p }) => p.name, ({ kind, p }) =>
    Effect.gen(function*() {
      yield* p.proxy.stall
      yield* ms(rng.int(1000, 8000)).pipe(Effect.ensuring(p.proxy.unstall))
      return { kind: `stall ${kind} connections`, target: p.name }
    }))

const partition: Action = (rng, t, _scale, busy) =>
  withTarget(rng, busy, proxies(t), ({ p }) => p.name, ({ kind, p }) =>
    Effect.gen(function*() {
      yield* p.proxy.stop
      yield* ms(rng.int(1000, 8000)).pipe(Effect.ensuring(p.proxy.start))
      return { kind: `refuse ${kind} connections`, target: p.name }
    }))

const shardDown: Action = (rng, t, scale, busy) =>
  withTarget(rng, busy, [t.ownShard], (m) => m.name, (m) =>
    Effect.gen(function*() {
      yield* m.stop
      yield* ms(Math.round(rng.int(5000, 15000) * scale))
      yield* m.start
      return { kind: "stop shard server", target: m.name }
    }))

const diskFull: Action = (rng, t, _scale, busy) => {
  const disk = t.ownDisk
  return disk === undefined ?
    Effect.succeed(undefined) :
    withTarget(rng, busy, [t.ownShard], (m) => m.name, (m) =>
      Effect.gen(function*() {
        yield* disk.fill
        yield* ms(rng.int(2000, 8000)).pipe(Effect.ensuring(disk.free))
        return { kind: "fill shard disk", target: m.name }
      }))
}

/** The actions and their weights (the full disk only when asked for: the other seeds' sequences stay as they were). */
const baseActions: ReadonlyArray<readonly [Action, number]> = [
  [kill, 5],
  [freeze, 2],
  [cut, 2],
  [stall, 2],
  [partition, 2],
  [shardDown, 1]
]

const pickAction = (rng: Random, actions: ReadonlyArray<readonly [Action, number]>): Action => {
  const total = actions.reduce((n, [, w]) => n + w, 0)
  let x = rng.next() * total
  for (const [a, w] of actions) {
    x -= w
    if (x < 0) return a
  }
  return actions[0]![0]
}

/**
 * Injects faults until `until` (ms since the epoch): `loops` loops (each seeded from `seed`), each
 * one fault at a time, 1–4 s apart, never two on one target at once; each fault recorded in
 * `record` when it is over. `scale` stretches the stopped shard's downtime with the run's length.
 */
export const injectFaults = (
  seed: number,
  loops: number,
  targets: Targets,
  until: number,
  scale: number,
  record: (fault: Fault) => void
) => {
  const busy = new Set<string>()
  const actions = targets.ownDisk === undefined ? baseActions : [...baseActions, [diskFull, 1] as const]
  const loop = (rng: Random) =>
    Effect.gen(function*() {
      while (Date.now() < until) {
        yield* ms(rng.int(1000, 4000))
        if (Date.now() >= until) break
        const action = pickAction(rng, actions)
        const start = Date.now()
        const done = yield* Effect.either(action(rng, targets, scale, busy))
        const end = Date.now()
        if (done._tag === "Left")
          record({ kind: "fault that failed", target: String(done.left).slice(0, 200), start, end })
        else if (done.right !== undefined)
          record({ ...done.right, start, end })
      }
    })
  return Effect.forEach(
    Array.from({ length: loops }, (_, i) => random(i === 0 ? seed : seed + 7919 * i)),
    loop,
    { concurrency: "unbounded", discard: true }
  )
}
