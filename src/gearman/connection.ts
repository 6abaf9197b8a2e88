// Connections to job servers. A `Transport` opens byte streams (node:net, or the in-process
// job server); `connect` frames them into packets; `keepConnected` holds one connection to a
// server open for as long as its scope lives, reconnecting on a Schedule while it is down.
import * as Net from "node:net"
import type { Scope } from "effect"
import { Deferred, Duration, Effect, Either, Exit, MetricLabel, Schedule } from "effect"
import { parseHostPort, type HostPort } from "../hostPort.js"
import { GearmanConnectionError, GearmanProtocolError } from "./errors.js"
import { connectionsLost, protocolErrors } from "./metrics.js"
import { DEFAULT_MAX_FRAME, Decoder, type Packet } from "../protocol/gearman.js"

/** A raw byte stream to a job server. */
export interface RawLink {
  /** Queues bytes for sending; returns false once the link is closed. */
  readonly write: (bytes: Buffer) => boolean
  /** Closes the link now (no flush), recording why. */
  readonly destroy: (reason: GearmanConnectionError) => void
}

export interface RawHandlers {
  readonly onData: (chunk: Buffer) => void
  readonly onClose: (reason: GearmanConnectionError) => void
}

/**
 * Opens byte streams to servers named "host:port" (or any name a memory transport knows).
 * Closing the scope flushes pending writes, then closes.
 */
export interface Transport {
  readonly open: (server: string, handlers: RawHandlers) => Effect.Effect<RawLink, GearmanConnectionError, Scope.Scope>
}

export interface NetOptions {
  readonly connectTimeout?: Duration.DurationInput
  readonly keepAliveDelay?: Duration.DurationInput
}

/** Where to connect; a name the settings did not check (the API takes any string) goes to port 4730 as is. */
export const parseServer = (server: string): HostPort =>
  Either.getOrElse(parseHostPort(server, { field: "server", defaultPort: 4730 }), () => ({ host: server, port: 4730 }))

/** TCP transport: no-delay, keepalive (idle links die silently otherwise), writes batched per tick. */
export const netTransport = (options: NetOptions = {}): Transport => ({
  open: (server, handlers) =>
    Effect.acquireRelease(
      Effect.async<Net.Socket, GearmanConnectionError>((resume) => {
        const { host, port } = parseServer(server)
        const socket = Net.connect({ host, port })
        const timeout = Duration.toMillis(options.connectTimeout ?? "5 seconds")
        socket.setTimeout(timeout)
        const failed = (message: string, cause?: unknown) => {
          socket.destroy()
          resume(Effect.fail(new GearmanConnectionError({ server, message, cause })))
        }
        const onError = (cause: Error) => failed(`cannot connect to ${server}: ${cause.message}`, cause)
        const onTimeout = () => failed(`cannot connect to ${server}: timed out`)
        socket.once("error", onError)
        socket.once("timeout", onTimeout)
        socket.once("connect", () => {
          socket.off("error", onError)
          socket.off("timeout", onTimeout)
          socket.setTimeout(0)
          socket.setNoDelay(true)
          socket.setKeepAlive(true, Duration.toMillis(options.keepAliveDelay ?? "15 seconds"))
          let lastError: Error | undefined
          socket.on("error", (e) => (lastError = e))
          socket.on("data", handlers.onData)
          socket.once("close", () =>
            handlers.onClose(
              new GearmanConnectionError({
                server,
                message: lastError
                  ? `connection to ${server} lost: ${lastError.message}`
                  : `connection to ${server} closed`,
                cause: lastError
              })
            ))
          resume(Effect.succeed(socket))
        })
        return Effect.sync(() => socket.destroy())
      }).pipe(Effect.map(batching)),
      // Whatever is still batched goes out before the FIN.
      ({ socket, flush }) => Effect.sync(flush).pipe(Effect.zipRight(closeGracefully(socket)))
    ).pipe(Effect.map(({ link }) => link))
})

/**
 * Packets written in one turn of the event loop leave in one write: many small packets per
 * syscall is where pipelining pays.
 */
const batching = (socket: Net.Socket) => {
  let batch: Array<Buffer> = []
  const flush = () => {
    if (batch.length === 0) return
    const out = batch
    batch = []
    if (socket.destroyed || !socket.writable) return
    socket.write(out.length === 1 ? out[0]! : Buffer.concat(out))
  }
  const link: RawLink = {
    write: (bytes) => {
      if (socket.destroyed || !socket.writable) return false
      if (batch.push(bytes) === 1) setImmediate(flush)
      return true
    },
    destroy: () => {
      batch = []
      socket.destroy()
    }
  }
  return { socket, flush, link }
}

/** end() flushes what was written, then FIN; a peer that never closes is cut after a grace period. */
const closeGracefully = (socket: Net.Socket): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    const timer = setTimeout(() => socket.destroy(), 2000)
    socket.once("close", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    socket.end()
  })

/** A packet connection to one job server. */
export interface Connection {
  readonly server: string
  /** Sends one encoded packet; false when the connection is already closed. */
  readonly send: (bytes: Buffer) => boolean
  /** Receives every decoded packet; packets arriving before it is set are held. */
  readonly setHandler: (handler: (packet: Packet) => void) => void
  /** Completes with why the connection closed. */
  readonly closed: Deferred.Deferred<GearmanConnectionError>
  readonly isOpen: () => boolean
  /** Date.now() of the last bytes received (set from socket callbacks, hence not Clock). */
  readonly lastReceived: () => number
  /** Drops the connection now, e.g. when the peer stopped answering. */
  readonly destroy: (reason: string) => void
}

export interface ConnectOptions {
  readonly maxFrame?: number
}

/** Opens a packet connection; a framing error closes only this connection. */
export const connect = (
  transport: Transport,
  server: string,
  options: ConnectOptions = {}
): Effect.Effect<Connection, GearmanConnectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const closed = yield* Deferred.make<GearmanConnectionError>()
    const decoder = new Decoder("RES", options.maxFrame ?? DEFAULT_MAX_FRAME)
    let handler: ((packet: Packet) => void) | undefined
    let held: Array<Packet> = []
    let open = true
    let link: RawLink | undefined
    let protocolError: GearmanProtocolError | undefined
    let lastReceived = Date.now()
    const close = (reason: GearmanConnectionError) => {
      if (!open) return
      open = false
      Deferred.unsafeDone(closed, Exit.succeed(reason))
    }
    // Declared before the callbacks that read it, assigned once they exist: it cannot be a const.
    // eslint-disable-next-line prefer-const
    link = yield* transport.open(server, {
      onData: (chunk) => {
        if (!open) return
        lastReceived = Date.now()
        const { packets, error } = decoder.push(chunk)
        // Packets before a framing error count: what we act on must not depend on TCP's chunking.
        for (const packet of packets) {
          if (handler) handler(packet)
          else held.push(packet)
        }
        if (error !== undefined && open) {
          protocolErrors.unsafeUpdate(1, [])
          protocolError = error
          const reason = new GearmanConnectionError({
            server,
            message: `protocol error from ${server}: ${error.message}`,
            cause: error
          })
          close(reason)
          link?.destroy(reason)
        }
      },
      onClose: (reason) =>
        close(
          protocolError ? new GearmanConnectionError({ server, message: reason.message, cause: protocolError }) : reason
        )
    })
    // Whatever closes the scope, pending waiters learn the connection is gone.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() =>
        close(new GearmanConnectionError({ server, message: `connection to ${server} closed locally` }))
      )
    )
    const raw = link
    return {
      server,
      send: (bytes) => open && raw.write(bytes),
      setHandler: (h) => {
        handler = h
        const pending = held
        held = []
        pending.forEach(h)
      },
      closed,
      isOpen: () => open,
      lastReceived: () => lastReceived,
      destroy: (message) => {
        const reason = new GearmanConnectionError({ server, message })
        close(reason)
        raw.destroy(reason)
      }
    }
  })

/** Exponential backoff with jitter, capped: what every reconnect uses unless told otherwise. */
export const defaultReconnectSchedule: Schedule.Schedule<unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.jittered,
  Schedule.union(Schedule.spaced("5 seconds"))
)

/** Mutable view of one server's link, read synchronously by request routing. */
export interface ServerSlot {
  readonly server: string
  current: Connection | undefined
  /** Completed after the first connection attempt, whatever its outcome. */
  readonly firstAttempt: Deferred.Deferred<void>
}

export interface KeepConnectedOptions<R = never> extends ConnectOptions {
  readonly transport: Transport
  readonly server: string
  readonly reconnect?: Schedule.Schedule<unknown>
  /** Runs on every (re)connection, in a scope closed when that connection ends. */
  readonly onConnect: (connection: Connection) => Effect.Effect<void, never, Scope.Scope | R>
}

/**
 * Keeps a connection to one server for as long as the calling scope lives. A lost
 * connection is marked down at once and retried in the background on the schedule (reset
 * after each success), so callers route around it meanwhile.
 */
export const keepConnected = <R = never>(
  options: KeepConnectedOptions<R>
): Effect.Effect<ServerSlot, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const slot: ServerSlot = { server: options.server, current: undefined, firstAttempt: yield* Deferred.make<void>() }
    const session = Effect.scoped(
      Effect.gen(function*() {
        const connection = yield* connect(options.transport, options.server, options).pipe(
          Effect.ensuring(Deferred.succeed(slot.firstAttempt, undefined))
        )
        slot.current = connection
        yield* Effect.logDebug("gearman server up")
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => void (slot.current === connection && (slot.current = undefined)))
        )
        yield* options.onConnect(connection)
        const openedAt = Date.now()
        const reason = yield* Deferred.await(connection.closed)
        slot.current = undefined
        connectionsLost.unsafeUpdate(1, [MetricLabel.make("server", options.server)])
        yield* Effect.logWarning("gearman server down", reason.message)
        // A server that accepts and then drops us at once, or speaks garbage, is not healthy:
        // keep backing off instead of starting the schedule over.
        if (Date.now() - openedAt < 1000 || reason.cause instanceof GearmanProtocolError)
          return yield* Effect.fail(reason)
      })
    )
    let failures = 0
    const attempt = session.pipe(
      Effect.tap(() => Effect.sync(() => (failures = 0))),
      Effect.tapError((e) =>
        Effect.suspend(() => (failures++ === 0
          ? Effect.logWarning("gearman server unreachable", e.message)
          : Effect.logDebug("gearman reconnect failed", e.message))
        )
      ),
      Effect.retry(options.reconnect ?? defaultReconnectSchedule)
    )
    // A server that accepts and drops at once must not make us spin.
    yield* attempt.pipe(
      Effect.repeat(Schedule.spaced("50 millis")),
      Effect.annotateLogs({ server: options.server }),
      Effect.forkScoped
    )
    return slot
  })

/**
 * Half-open connections (a server host gone without a FIN) are noticed by TCP keepalive only
 * after minutes. This watchdog, run in a connection's scope, drops it when a request has
 * waited `timeout` with nothing received, and sends `ping` (an ECHO_REQ) when idle so that
 * there is always something to wait for.
 */
export const watchdog = (
  connection: Connection,
  options: {
    readonly timeout: Duration.DurationInput
    readonly awaiting: () => boolean
    readonly ping?: () => void
  }
): Effect.Effect<void, never, Scope.Scope> => {
  const timeout = Duration.toMillis(options.timeout)
  // An infinite timeout turns the watchdog off (in-process servers have no half-open sockets).
  if (!Number.isFinite(timeout)) return Effect.void
  // When a wait was first seen: a request sent after a quiet spell has not waited that spell.
  let awaitingSince: number | undefined
  return Effect.sync(() => {
    const now = Date.now()
    if (!options.awaiting()) {
      awaitingSince = undefined
      if (now - connection.lastReceived() >= timeout) options.ping?.()
      return
    }
    awaitingSince ??= now
    const silent = now - Math.max(awaitingSince, connection.lastReceived())
    if (silent >= timeout) connection.destroy(`no answer from ${connection.server} for ${Math.round(silent)} ms`)
  }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(Math.max(10, timeout / 2)))), Effect.forkScoped, Effect.asVoid)
}
