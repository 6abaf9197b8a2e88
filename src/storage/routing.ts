/**
 * Where a job goes, and which shards to avoid. A unique job's shard is fixed by its key
 * (Gearman::Client's CRC32 bucket rule over the shard ids ascending, so other languages can
 * mimic it, and uniqueness holds across shards); other jobs go to a random live shard. A shard
 * that could not be reached, or whose connection was lost, is avoided for new non-unique jobs
 * for a cool-off period; a success clears that.
 */
import { Clock, Duration, Effect, Random, Ref } from "effect"
import { hashBucket } from "../crc32.js"
import type { ShardFailure, ShardLost, ShardUnreached } from "./ShardBackend.js"

/** The shard of a unique key; trailing spaces do not count (keys compare PAD SPACE everywhere). */
export const shardForKey = (uniqkey: string, shardIds: ReadonlyArray<number>): number =>
  shardIds[hashBucket(uniqkey.replace(/ +$/, ""), shardIds.length)]!

export interface ShardHealth {
  readonly dbid: number
  /** Until when (unix ms) the shard is avoided for new jobs after a failure; null when healthy. */
  readonly avoidedUntil: number | null
}

const isOutage = (e: { readonly _tag: string }): e is ShardUnreached | ShardLost =>
  e._tag === "ShardUnreached" || e._tag === "ShardLost"

/** The cool-off of failing shards. */
export const makeHealth = (shardIds: ReadonlyArray<number>, coolOff: Duration.DurationInput) =>
  Effect.gen(function*() {
    const coolOffMs = Duration.toMillis(coolOff)
    const avoided = yield* Ref.make(new Map<number, number>())

    const markDown = (dbid: number, failure: ShardFailure) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const wasAvoided = yield* Ref.modify(
          avoided,
          (m) => [(m.get(dbid) ?? 0) > now, new Map(m).set(dbid, now + coolOffMs)]
        )
        // Once per outage: while it lasts, every retry (the QueueRunner's, every couple of seconds) extends it quietly.
        if (!wasAvoided) {
          yield* Effect.logWarning(`shard avoided for ${coolOffMs / 1000}s: ${failure.reason}`).pipe(
            Effect.annotateLogs({ shard: dbid, failure: failure._tag })
          )
        }
      })
    const markUp = (dbid: number) =>
      Ref.update(avoided, (m) => {
        if (!m.has(dbid)) return m
        const next = new Map(m)
        next.delete(dbid)
        return next
      })

    /** Runs one operation on a shard, tracking its health: an outage avoids it, a success clears that. */
    const tracked = <A, E extends { readonly _tag: string }>(dbid: number, effect: Effect.Effect<A, E>) =>
      effect.pipe(
        Effect.tap(() => markUp(dbid)),
        Effect.tapError((e) => isOutage(e) ? markDown(dbid, e) : Effect.void)
      )

    /** Shards in the order a non-unique insert tries them: live ones at random, then cooling ones at random. */
    const insertOrder = <S extends { readonly dbid: number }>(shards: ReadonlyArray<S>) =>
      // One shard (the common deployment, and SQLite): nothing to order, no step per insert.
      shards.length < 2 ? Effect.succeed(shards) : Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const avoid = yield* Ref.get(avoided)
        const shuffled = (some: ReadonlyArray<S>) => some.length < 2 ? Effect.succeed(some) : Random.shuffle(some)
        const live = yield* shuffled(shards.filter((b) => (avoid.get(b.dbid) ?? 0) <= now))
        const cooling = yield* shuffled(shards.filter((b) => (avoid.get(b.dbid) ?? 0) > now))
        return [...live, ...cooling]
      })

    const health: Effect.Effect<ReadonlyArray<ShardHealth>> = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const avoid = yield* Ref.get(avoided)
      return shardIds.map((dbid) => {
        const until = avoid.get(dbid)
        return { dbid, avoidedUntil: until !== undefined && until > now ? until : null }
      })
    })

    return { tracked, insertOrder, health }
  })
