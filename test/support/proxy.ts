// A TCP proxy in front of a real server, for fault tests: it can stop listening, cut every
// connection, or cut one at the moment a matching request has been answered (so the client
// cannot know whether it was applied).
import * as net from "node:net"
import { Effect } from "effect"

export interface Proxy {
  readonly port: number
  /** Accept connections again (on the same port). */
  readonly start: Effect.Effect<void>
  /** Stop accepting and cut every open connection. */
  readonly stop: Effect.Effect<void>
  /** Cut every open connection (as a server restart would). */
  readonly cutAll: Effect.Effect<void>
  /** Once: after the server answers a request whose bytes contain `marker`, drop the answer and cut. */
  readonly cutAfterAnswer: (marker: string) => Effect.Effect<void>
}

export const makeProxy = (target: { readonly host: string; readonly port: number }) =>
  Effect.acquireRelease(
    Effect.async<{ proxy: Proxy; close: () => Promise<void> }>((resume) => {
      const sockets = new Set<net.Socket>()
      let trap: string | null = null
      const onConnection = (client: net.Socket) => {
        const upstream = net.connect(target.port, target.host)
        sockets.add(client).add(upstream)
        let cutOnAnswer = false
        client.on("data", (chunk) => {
          if (trap !== null && chunk.includes(trap)) {
            trap = null
            cutOnAnswer = true
          }
          upstream.write(chunk)
        })
        upstream.on("data", (chunk) => {
          if (cutOnAnswer) {
            client.destroy()
            upstream.destroy()
          } else client.write(chunk)
        })
        const end = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on("close", end).on("error", end)
        upstream.on("close", end).on("error", end)
      }
      let server = net.createServer(onConnection)
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        const cutAll = Effect.sync(() => {
          for (const s of sockets) s.destroy()
          sockets.clear()
        })
        const stop = Effect.zipRight(
          cutAll,
          Effect.async<void>((done) => {
            server.close(() => done(Effect.void))
          })
        )
        const start = Effect.async<void>((done) => {
          server = net.createServer(onConnection)
          server.listen(port, "127.0.0.1", () => done(Effect.void))
        })
        resume(Effect.succeed({
          proxy: {
            port,
            start,
            stop,
            cutAll,
            cutAfterAnswer: (marker) => Effect.sync(() => (trap = marker))
          },
          close: () =>
            new Promise<void>((done) => {
              for (const s of sockets) s.destroy()
              if (server.listening) server.close(() => done())
              else done()
            })
        }))
      })
    }),
    ({ close }) => Effect.promise(close)
  ).pipe(Effect.map(({ proxy }) => proxy))
