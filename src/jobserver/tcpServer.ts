// The in-process JobServer served over TCP: an embedded gearmand that any Gearman client or
// worker (the C CLI, Perl's Gearman::Client, gearadmin) can use. Binary and admin protocols
// share the port, as in gearmand. A peer that breaks the framing or stops reading its answers
// loses its own connection; the server and every other peer go on.
import * as Net from "node:net"
import { Data, Effect, Either, Runtime } from "effect"
import type { Scope } from "effect"
import { formatHostPort, type HostPort, type HostPortOptions, parseHostPort } from "../hostPort.js"
import { JobServer, type JobServerOptions } from "./JobServer.js"
import { DEFAULT_MAX_FRAME } from "../protocol/gearman.js"

/** The embedded job server could not listen on its address (in use, not permitted...). */
export class GearmanListenError extends Data.TaggedError("GearmanListenError")<{
  readonly address: string
  readonly message: string
  /** The listen error (`EADDRINUSE`, `EACCES`...). */
  readonly cause?: unknown
}> {}

export interface TcpServerOptions extends JobServerOptions {
  readonly host?: string
  /** 0 picks a free port. */
  readonly port?: number
  /**
   * Bytes waiting to be sent to one peer before it is cut off: a client that never reads its
   * answers must not grow the server's memory without end. Default: twice the packet limit.
   * (`garivini gearmand --max-backlog`)
   */
  readonly maxBacklog?: number
  /**
   * Peers connected at once (default `DEFAULT_MAX_CONNECTIONS`); more are refused on arrival.
   * (`garivini gearmand --max-connections`)
   */
  readonly maxConnections?: number
}

export const DEFAULT_MAX_CONNECTIONS = 4096

export interface RunningServer {
  readonly host: string
  readonly port: number
  /** `host:port`, as the `server` settings of clients and workers take it. */
  readonly address: string
  readonly core: JobServer
}

/** `--listen`: `host:port`, `[v6]:port` or `port` (0: any free port), as `parseHostPort` reads it. */
export const listenOptions = (defaultHost = "127.0.0.1"): HostPortOptions => ({
  field: "listen",
  defaultHost,
  allowPortZero: true
})

/** Parses `--listen` (undefined when it is not an address; `parseHostPort` says why). */
export const parseListen = (text: string, defaultHost = "127.0.0.1"): HostPort | undefined =>
  Either.getOrUndefined(parseHostPort(text.trim(), listenOptions(defaultHost)))

/** Listens until the scope closes; then every peer is disconnected and queued jobs are dropped. */
export const serve = (options: TcpServerOptions = {}): Effect.Effect<RunningServer, GearmanListenError, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const log = (message: string, peer: string) =>
      Runtime.runFork(runtime)(Effect.logWarning(message).pipe(Effect.annotateLogs({ role: "gearmand", peer })))
    const host = options.host ?? "127.0.0.1"
    const requestedPort = options.port ?? 4730
    const wanted = formatHostPort({ host, port: requestedPort })
    const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME
    const maxBacklog = options.maxBacklog ?? 2 * maxFrame
    const core = new JobServer({ handlePrefix: `H:garivini:${process.pid}`, ...options, maxFrame })
    let closing = false

    const onConnection = (socket: Net.Socket) => {
      socket.setNoDelay(true)
      socket.setKeepAlive(true, 60_000)
      const peer = `${socket.remoteAddress ?? "-"}:${socket.remotePort ?? 0}`
      const session = core.connect(
        socket.remoteAddress ?? "-",
        (bytes) => {
          // Cut off already: its session goes on the "close" event; until then it is sent nothing.
          if (socket.destroyed) return
          socket.write(bytes)
          if (socket.writableLength > maxBacklog) {
            log(`closing the connection: ${socket.writableLength} bytes unread by the peer`, peer)
            socket.destroy()
          }
        },
        (reason) => {
          // The core cuts a peer off on a framing error (bad magic, unknown type, oversized frame)
          // or when the peers' unfinished input together passes its bound.
          if (!closing) log(`closing the connection: ${reason}`, peer)
          socket.destroy()
        }
      )
      socket.on("data", session.receive)
      socket.on("close", session.disconnect)
      socket.on("error", () => socket.destroy())
    }

    const listener = yield* Effect.acquireRelease(
      Effect.async<Net.Server, GearmanListenError>((resume) => {
        const server = Net.createServer(onConnection)
        // Node closes connections past this on arrival, before any byte is read.
        server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS
        server.on(
          "drop",
          (data) =>
            log(
              `refusing a connection: ${server.maxConnections} peers already connected`,
              `${data?.remoteAddress ?? "-"}:${data?.remotePort ?? 0}`
            )
        )
        server.once(
          "error",
          (e) =>
            resume(
              Effect.fail(
                new GearmanListenError({
                  address: wanted,
                  message: `cannot listen on ${wanted}: ${e.message}`,
                  cause: e
                })
              )
            )
        )
        server.listen(requestedPort, host, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          closing = true
          core.shutdown()
          server.close(() => resume(Effect.void))
        })
    )
    const address = listener.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    return { host, port, address: formatHostPort({ host, port }), core }
  })
