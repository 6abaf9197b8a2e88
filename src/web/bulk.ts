/**
 * An action on every job matching a list filter: counted before it is confirmed, then run in
 * keyset pages of `BULK_BATCH` jobs, each job through its `JOB_ACTIONS` entry (the same guard as one
 * job: a job that may be running is refused unless forced). Each job's change is its own short
 * statement: no action holds a transaction over thousands of rows. At most `BULK_MAX` jobs an
 * action; more matching jobs are said, and left for another run.
 */
import { Effect, Either } from "effect"
import type { StoredJob } from "../Job.js"
import { formatHandle } from "../Job.js"
import type { ActionOptions, JobAction } from "../jobActions.js"
import type { ShardOperationError } from "../errors.js"
import { Storage } from "../storage/Storage.js"
import type { ListFilter } from "../storage/Storage.js"

/** Jobs one action on a filter touches, at most. */
export const BULK_MAX = 10_000
/** Jobs read (and then acted on) per page. */
export const BULK_BATCH = 500

/** Visits the matching jobs by id, a page at a time, until `max` were seen or none is left. */
const eachPage = <E, R>(
  filter: ListFilter,
  max: number,
  onPage: (jobs: ReadonlyArray<StoredJob>) => Effect.Effect<void, E, R>
): Effect.Effect<{ readonly seen: number; readonly more: boolean }, ShardOperationError | E, Storage | R> =>
  Effect.gen(function*() {
    const storage = yield* Storage
    let seen = 0
    let after: StoredJob | undefined
    while (seen < max) {
      const want = Math.min(BULK_BATCH, max - seen)
      const page = yield* storage.list({
        ...filter,
        order: "id",
        limit: want,
        after: after === undefined ? undefined : { dbid: after.dbid, jobid: after.jobid }
      })
      if (page.length === 0) return { seen, more: false }
      yield* onPage(page)
      seen += page.length
      after = page[page.length - 1]
      if (page.length < want) return { seen, more: false }
    }
    // Full: is there one more?
    const next = yield* storage.list({
      ...filter,
      order: "id",
      limit: 1,
      after: after === undefined ? undefined : { dbid: after.dbid, jobid: after.jobid }
    })
    return { seen, more: next.length > 0 }
  })

/** How many jobs match, up to `max`, and whether more do. */
export const countMatching = (filter: ListFilter, max = BULK_MAX) =>
  Effect.map(eachPage(filter, max, () => Effect.void), ({ more, seen }) => ({ count: seen, more }))

export interface BulkResult {
  /** Jobs acted on (at most `BULK_MAX`). */
  readonly total: number
  /** Whether more jobs matched than were acted on. */
  readonly more: boolean
  /** Jobs per outcome (`Done`, `Unchanged`, `NotFound`, `Refused`, `Failed`). */
  readonly outcomes: Readonly<Record<string, number>>
  /** The first outcomes other than done, to show (at most 50). */
  readonly notable: ReadonlyArray<{ readonly handle: string; readonly outcome: string; readonly message: string }>
}

/** Runs `action` on every matching job, up to `max`, page by page. */
export const runOnMatching = (action: JobAction, filter: ListFilter, options: ActionOptions, max = BULK_MAX) =>
  Effect.gen(function*() {
    const outcomes: Record<string, number> = {}
    const notable: Array<{ handle: string; outcome: string; message: string }> = []
    const { more, seen } = yield* eachPage(
      filter,
      max,
      (jobs) =>
        Effect.forEach(jobs, (job) =>
          Effect.map(Effect.either(action.run(job, options)), (r) => {
            const outcome = Either.isRight(r) ? r.right._tag : "Failed"
            outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
            if (outcome !== "Done" && notable.length < 50) {
              notable.push({
                handle: formatHandle(job),
                outcome,
                message: Either.isRight(r) ? r.right.message : r.left.message
              })
            }
          }), { concurrency: 4, discard: true })
    )
    const result: BulkResult = { total: seen, more, outcomes, notable }
    return result
  })
