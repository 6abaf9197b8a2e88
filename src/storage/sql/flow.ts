/**
 * Flow control's tables in a SQL shard (MySQL / MariaDB and SQLite share these statements; the
 * dialect gives the row lock and INSERT IGNORE). Each read-modify-write is one transaction
 * holding the row's lock (`FOR UPDATE`; SQLite's BEGIN IMMEDIATE is the whole database's), so
 * concurrent runners serialize on it. These are cold-path statements: the hot path reads the
 * controls at most once a second per shard, and takes tokens only for rate-limited functions.
 */
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Option, Schema } from "effect"
import { bytesView } from "../../Job.js"
import type { ValidNewJob } from "../../Job.js"
import { BucketRow, ControlRow, controlFromRow, patched, ScheduleDbRow, scheduleFromRow, takeTokens } from "../flow.js"
import type { FunctionControl } from "../flow.js"
import { ShardRejected } from "../ShardBackend.js"
import type { FlowBackend, ShardFailure } from "../ShardBackend.js"
import { badData } from "./rows.js"

export interface FlowContext {
  readonly withConnection: <A>(
    /** `priority`: the shard has migration 0005 (the `concurrency` column). */
    f: (conn: Connection, priority: boolean) => Effect.Effect<A, ShardFailure>,
    bounded?: boolean
  ) => Effect.Effect<A, ShardFailure>
  readonly inTransaction: (
    conn: Connection
  ) => <A>(body: Effect.Effect<A, ShardFailure>) => Effect.Effect<A, ShardFailure>
  readonly classify: (error: SqlError) => ShardFailure
  readonly changes: (raw: unknown) => Effect.Effect<number, ShardFailure>
  /** ` FOR UPDATE` (MySQL) or nothing (SQLite: the transaction holds the write lock). */
  readonly forUpdate: string
  /** `INSERT IGNORE` (MySQL) or `INSERT OR IGNORE` (SQLite). */
  readonly insertIgnore: string
}

const CONTROL_COLUMNS = "funcname, paused, rate_count, rate_period_ms, rate_burst"
/** With migration 0005's column. */
const controlColumns = (priority: boolean) => priority ? `${CONTROL_COLUMNS}, concurrency` : CONTROL_COLUMNS
const SCHEDULE_COLUMNS = "name, cron, timezone, funcname, arg, missed, next_slot"
const decodeControls = Schema.decodeUnknown(Schema.Array(ControlRow))
const decodeBuckets = Schema.decodeUnknown(Schema.Array(BucketRow))
const decodeSchedules = Schema.decodeUnknown(Schema.Array(ScheduleDbRow))

export const make = (ctx: FlowContext): FlowBackend => {
  const query = (conn: Connection, sql: string, params: ReadonlyArray<unknown>) =>
    Effect.mapError(conn.execute(sql, params, undefined), ctx.classify)
  const run = (conn: Connection, sql: string, params: ReadonlyArray<unknown>) =>
    Effect.flatMap(Effect.mapError(conn.executeRaw(sql, params), ctx.classify), ctx.changes)

  const controlsOn = (conn: Connection, priority: boolean, where: string, params: ReadonlyArray<unknown>) =>
    Effect.flatMap(
      query(conn, `SELECT ${controlColumns(priority)} FROM garivini_function${where}`, params),
      (rows) =>
        Effect.mapBoth(decodeControls(rows), {
          onFailure: badData("garivini_function rows"),
          onSuccess: (r) => r.map(controlFromRow)
        })
    )

  const bucketOn = (conn: Connection, funcname: string, lock: boolean) =>
    Effect.flatMap(
      query(
        conn,
        `SELECT tokens, refilled_ms FROM garivini_rate_bucket WHERE funcname = ?${lock ? ctx.forUpdate : ""}`,
        [funcname]
      ),
      (rows) =>
        Effect.mapBoth(decodeBuckets(rows), {
          onFailure: badData("garivini_rate_bucket rows"),
          onSuccess: (r) =>
            Option.map(Option.fromNullable(r[0]), (b) => ({ tokens: b.tokens, refilledMs: b.refilled_ms }))
        })
    )

  const writeControl = (
    conn: Connection,
    priority: boolean,
    existed: boolean,
    funcname: string,
    next: FunctionControl | undefined
  ) => {
    if (next === undefined) return run(conn, "DELETE FROM garivini_function WHERE funcname = ?", [funcname])
    const values = [
      next.paused ? 1 : 0,
      next.rate?.count ?? null,
      next.rate?.periodMs ?? null,
      next.rate?.burst ?? null,
      ...(priority ? [next.concurrency] : [])
    ]
    return existed
      ? run(
        conn,
        `UPDATE garivini_function SET paused = ?, rate_count = ?, rate_period_ms = ?, rate_burst = ?${
          priority ? ", concurrency = ?" : ""
        } WHERE funcname = ?`,
        [...values, funcname]
      )
      : run(
        conn,
        `INSERT INTO garivini_function (${controlColumns(priority)}) VALUES (${
          priority ? "?,?,?,?,?,?" : "?,?,?,?,?"
        })`,
        [funcname, ...values]
      )
  }

  return {
    controls: ctx.withConnection((conn, priority) => controlsOn(conn, priority, " ORDER BY funcname", [])),
    setControl: (funcname, patch) =>
      ctx.withConnection((conn, priority) =>
        patch.concurrency !== undefined && patch.concurrency !== null && !priority
          ? Effect.fail(
            new ShardRejected({
              reason:
                "this shard lacks migration 0005_flow_priority, which holds concurrency limits; run `garivini migrate`"
            })
          )
          : ctx.inTransaction(conn)(Effect.gen(function*() {
            const [current] = yield* controlsOn(conn, priority, ` WHERE funcname = ?${ctx.forUpdate}`, [funcname])
            const next = patched(funcname, current, patch)
            yield* writeControl(conn, priority, current !== undefined, funcname, next)
            // A new or cleared rate starts a fresh bucket (full, as a function never limited would be).
            if (patch.rate !== undefined) {
              yield* run(conn, "DELETE FROM garivini_rate_bucket WHERE funcname = ?", [funcname])
            }
            return next
          }))
      ),
    takeTokens: (funcname, rate, nowMs, want) =>
      ctx.withConnection((conn) =>
        ctx.inTransaction(conn)(Effect.gen(function*() {
          let bucket = yield* bucketOn(conn, funcname, true)
          if (Option.isNone(bucket)) {
            // The first take: create the row (full), then lock it, so two first takers serialize.
            yield* run(
              conn,
              `${ctx.insertIgnore} INTO garivini_rate_bucket (funcname, tokens, refilled_ms) VALUES (?,?,?)`,
              [funcname, rate.burst, nowMs]
            )
            bucket = yield* bucketOn(conn, funcname, true)
          }
          const next = takeTokens(Option.getOrUndefined(bucket), rate, nowMs, want)
          yield* run(conn, "UPDATE garivini_rate_bucket SET tokens = ?, refilled_ms = ? WHERE funcname = ?", [
            next.bucket.tokens,
            next.bucket.refilledMs,
            funcname
          ])
          return next.taken
        }))
      ),
    bucket: (funcname) => ctx.withConnection((conn) => bucketOn(conn, funcname, false)),
    schedules: ctx.withConnection((conn) =>
      Effect.flatMap(
        query(conn, `SELECT ${SCHEDULE_COLUMNS} FROM garivini_schedule ORDER BY name`, []),
        (rows) =>
          Effect.mapBoth(decodeSchedules(rows), {
            onFailure: badData("garivini_schedule rows"),
            onSuccess: (r) => r.map(scheduleFromRow)
          })
      )
    ),
    putSchedule: (row) =>
      ctx.withConnection((conn) =>
        ctx.inTransaction(conn)(Effect.gen(function*() {
          yield* run(conn, "DELETE FROM garivini_schedule WHERE name = ?", [row.name])
          yield* run(conn, `INSERT INTO garivini_schedule (${SCHEDULE_COLUMNS}) VALUES (?,?,?,?,?,?,?)`, [
            row.name,
            row.cron,
            row.timezone,
            row.funcname,
            row.arg,
            row.missed,
            row.nextSlot
          ])
        }))
      ),
    removeSchedule: (name) =>
      ctx.withConnection((conn) =>
        Effect.map(run(conn, "DELETE FROM garivini_schedule WHERE name = ?", [name]), (n) => n > 0)
      ),
    advanceSchedule: (name, expected, next, jobs) =>
      ctx.withConnection((conn) =>
        ctx.inTransaction(conn)(Effect.gen(function*() {
          const moved = yield* run(
            conn,
            "UPDATE garivini_schedule SET next_slot = ? WHERE name = ? AND next_slot = ?",
            [next, name, expected]
          )
          if (moved === 0) return false
          if (jobs.length > 0) yield* insertJobs(conn, jobs)
          return true
        }))
      )
  }

  function insertJobs(conn: Connection, jobs: ReadonlyArray<ValidNewJob>) {
    return run(
      conn,
      `${ctx.insertIgnore} INTO job (funcname, uniqkey, \`coalesce\`, arg, run_after, flag, failcount) VALUES ${
        jobs.map(() => "(?,?,?,?,?,?,0)").join(",")
      }`,
      jobs.flatMap((j) => [j.funcname, j.uniqkey, j.coalesce, bytesView(j.arg), j.runAfter, j.flag])
    )
  }
}
