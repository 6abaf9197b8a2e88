// Admin commands over the text protocol, one short connection per command (gearmand answers
// in order on any connection; a fresh one keeps a stuck answer from blocking the next).
import { Deferred, Effect, Either, Exit } from "effect"
import * as P from "../protocol/admin.js"
import type { Transport } from "./connection.js"
import { GearmanAdminError, GearmanConnectionError } from "./errors.js"

export interface AdminOptions {
  readonly transport: Transport
  readonly servers: ReadonlyArray<string>
}

/** Sends one command line and returns the answer's lines (list terminator included). */
export const command = (
  transport: Transport,
  server: string,
  line: string
): Effect.Effect<ReadonlyArray<string>, GearmanConnectionError | GearmanAdminError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const answer = yield* Deferred.make<ReadonlyArray<string>, GearmanConnectionError | GearmanAdminError>()
      const reader = new P.AnswerReader(line)
      const link = yield* transport.open(server, {
        onData: (chunk) => {
          const result = reader.push(chunk)
          if (result === undefined) return
          Deferred.unsafeDone(
            answer,
            Either.match(result, {
              onLeft: (e) => Exit.fail(new GearmanAdminError({ server, command: line, message: e.message, cause: e })),
              onRight: Exit.succeed
            })
          )
        },
        onClose: (reason) => Deferred.unsafeDone(answer, Exit.fail(reason))
      })
      link.write(Buffer.from(line + "\n", "utf8"))
      return yield* Deferred.await(answer).pipe(
        Effect.timeoutFail({
          duration: "30 seconds",
          onTimeout: () =>
            new GearmanConnectionError({ server, message: `no answer from ${server} to ${JSON.stringify(line)}` })
        })
      )
    })
  )

const parsed = <A>(
  transport: Transport,
  server: string,
  line: string,
  parse: (lines: ReadonlyArray<string>) => Either.Either<A, string>
): Effect.Effect<A, GearmanConnectionError | GearmanAdminError> =>
  command(transport, server, line).pipe(
    Effect.flatMap((lines) =>
      Either.match(parse(lines), {
        onLeft: (message) => Effect.fail(new GearmanAdminError({ server, command: line, message })),
        onRight: Effect.succeed
      })
    )
  )

const safeArg = (server: string, line: string, arg: string): Effect.Effect<void, GearmanAdminError> =>
  /[\s]/.test(arg) || arg.length === 0
    ? Effect.fail(
      new GearmanAdminError({
        server,
        command: line,
        message: `argument ${JSON.stringify(arg)} cannot be sent over the text protocol`
      })
    )
    : Effect.void

export interface Admin {
  readonly status: (
    server: string
  ) => Effect.Effect<ReadonlyArray<P.FunctionStatus>, GearmanConnectionError | GearmanAdminError>
  readonly priorityStatus: (
    server: string
  ) => Effect.Effect<ReadonlyArray<P.PriorityStatus>, GearmanConnectionError | GearmanAdminError>
  readonly workers: (
    server: string
  ) => Effect.Effect<ReadonlyArray<P.WorkerInfo>, GearmanConnectionError | GearmanAdminError>
  readonly version: (server: string) => Effect.Effect<string, GearmanConnectionError | GearmanAdminError>
  readonly getPid: (server: string) => Effect.Effect<number, GearmanConnectionError | GearmanAdminError>
  readonly showJobs: (
    server: string
  ) => Effect.Effect<ReadonlyArray<P.JobInfo>, GearmanConnectionError | GearmanAdminError>
  /** `maxqueue FUNC [N | HIGH NORMAL LOW]`; no size resets to unlimited. */
  readonly maxQueue: (
    server: string,
    fn: string,
    size?: number | readonly [number, number, number]
  ) => Effect.Effect<void, GearmanConnectionError | GearmanAdminError>
  readonly cancelJob: (
    server: string,
    handle: string
  ) => Effect.Effect<void, GearmanConnectionError | GearmanAdminError>
  /**
   * Per-function status summed over every server that answers. Servers that are down are
   * skipped (logged); fails only when none answers.
   */
  readonly queueDepths: () => Effect.Effect<
    ReadonlyMap<string, P.FunctionStatus>,
    GearmanConnectionError | GearmanAdminError
  >
}

export const make = (options: AdminOptions): Admin => {
  const { transport } = options
  const status = (server: string) => parsed(transport, server, "status", P.parseStatus)
  return {
    status,
    priorityStatus: (server) => parsed(transport, server, "prioritystatus", P.parsePriorityStatus),
    workers: (server) => parsed(transport, server, "workers", P.parseWorkers),
    version: (server) => parsed(transport, server, "version", P.parseVersion),
    getPid: (server) => parsed(transport, server, "getpid", P.parsePid),
    showJobs: (server) => parsed(transport, server, "show jobs", P.parseShowJobs),
    maxQueue: (server, fn, size) => {
      const sizes = size === undefined ? "" : typeof size === "number" ? ` ${size}` : ` ${size.join(" ")}`
      const line = `maxqueue ${fn}${sizes}`
      return safeArg(server, line, fn).pipe(Effect.zipRight(parsed(transport, server, line, P.parseOk)))
    },
    cancelJob: (server, handle) => {
      const line = `cancel job ${handle}`
      return safeArg(server, line, handle).pipe(Effect.zipRight(parsed(transport, server, line, P.parseOk)))
    },
    queueDepths: Effect.fn("Gearman.queueDepths")(function*() {
      const results = yield* Effect.forEach(options.servers, (server) => Effect.either(status(server)), {
        concurrency: "unbounded"
      })
      const totals = new Map<string, P.FunctionStatus>()
      let answered = 0
      let lastError: GearmanConnectionError | GearmanAdminError | undefined
      for (const [i, result] of results.entries()) {
        if (Either.isLeft(result)) {
          lastError = result.left
          yield* Effect.logWarning("gearman status unavailable", result.left.message).pipe(
            Effect.annotateLogs({ server: options.servers[i] })
          )
          continue
        }
        answered++
        for (const row of result.right) {
          const sum = totals.get(row.name)
          totals.set(
            row.name,
            sum
              ? {
                name: row.name,
                total: sum.total + row.total,
                running: sum.running + row.running,
                workers: sum.workers + row.workers
              }
              : row
          )
        }
      }
      if (answered === 0 && lastError) return yield* Effect.fail(lastError)
      const depths: ReadonlyMap<string, P.FunctionStatus> = totals
      return depths
    })
  }
}
