// A TCP proxy in front of a real server, for fault tests: it can stop listening, cut every
// connection, or cut one at the moment a matching request has been answered (so the client
// cannot know whether it was applied), or hold a request until the test releases it.
import * as net from "node:net"
import { Deferred, Effect, Exit } from "effect"

/** A request held at the proxy: `held` completes once it arrived; `release` sends it (and what followed) on. */
export interface Hold {
  readonly held: Effect.Effect<void>
  readonly release: Effect.Effect<void>
}

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
  /** Once: hold the request whose bytes contain `marker`, and whatever follows it on its connection. */
  readonly holdRequest: (marker: string) => Effect.Effect<Hold>
  /** Stop forwarding bytes either way on every connection, new ones included (a frozen network). */
  readonly stall: Effect.Effect<void>
  /** Forward again what a stall held back. */
  readonly unstall: Effect.Effect<void>
}

export const makeProxy = (target: { readonly host: string; readonly port: number }) =>
  Effect.acquireRelease(
    Effect.async<{ proxy: Proxy; close: () => Promise<void> }>((resume) => {
      const sockets = new Set<net.Socket>()
      let stalled = false
      let trap: string | null = null
      let holdTrap: {
        readonly marker: string
        readonly arrived: () => void
        readonly onRelease: (go: () => void) => void
      } | null = null
      const onConnection = (client: net.Socket) => {
        const upstream = net.connect(target.port, target.host)
        sockets.add(client).add(upstream)
        if (stalled) {
          client.pause()
          upstream.pause()
        }
        let cutOnAnswer = false
        let held: Array<Buffer> | null = null
        client.on("data", (chunk) => {
          if (trap !== null && chunk.includes(trap)) {
            trap = null
            cutOnAnswer = true
          }
          if (held === null && holdTrap !== null && chunk.includes(holdTrap.marker)) {
            const hold = holdTrap
            holdTrap = null
            const queue: Array<Buffer> = []
            held = queue
            hold.onRelease(() => {
              held = null
              for (const c of queue) upstream.write(c)
            })
            hold.arrived()
          }
          if (held !== null) held.push(chunk)
          else upstream.write(chunk)
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
            stall: Effect.sync(() => {
              stalled = true
              for (const s of sockets) s.pause()
            }),
            unstall: Effect.sync(() => {
              stalled = false
              for (const s of sockets) s.resume()
            }),
            cutAfterAnswer: (marker) => Effect.sync(() => (trap = marker)),
            holdRequest: (marker) =>
              Effect.gen(function*() {
                const arrived = yield* Deferred.make<void>()
                let released = false
                let go: (() => void) | undefined
                holdTrap = {
                  marker,
                  arrived: () => Deferred.unsafeDone(arrived, Exit.void),
                  onRelease: (f) => {
                    if (released) f()
                    else go = f
                  }
                }
                return {
                  held: Deferred.await(arrived),
                  release: Effect.sync(() => {
                    released = true
                    go?.()
                  })
                }
              })
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
