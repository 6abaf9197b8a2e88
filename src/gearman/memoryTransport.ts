// A Transport to in-process JobServers, named like real servers. Bytes cross asynchronously
// (a microtask each way, in order), as they would over a socket.
import { Effect } from "effect"
import { GearmanConnectionError } from "./errors.js"
import type { Transport } from "./connection.js"
import type { JobServer } from "../jobserver/JobServer.js"

/** Which in-process servers are "listening". Removing one makes new connections fail. */
export type MemoryServers = Map<string, JobServer>

export const memoryTransport = (servers: MemoryServers): Transport => ({
  open: (server, handlers) =>
    Effect.acquireRelease(
      Effect.suspend(() => {
        const core = servers.get(server)
        if (!core)
          return Effect.fail(
            new GearmanConnectionError({ server, message: `cannot connect to ${server}: no such memory server` })
          )
        let open = true
        const closeLink = (message: string) => {
          if (!open) return
          open = false
          session.disconnect()
          handlers.onClose(new GearmanConnectionError({ server, message }))
        }
        const session = core.connect(
          "127.0.0.1",
          (bytes) => queueMicrotask(() => open && handlers.onData(bytes)),
          (reason) => queueMicrotask(() => closeLink(`connection to ${server} closed by the server: ${reason}`))
        )
        return Effect.succeed({
          link: {
            write: (bytes: Buffer) => {
              if (!open) return false
              queueMicrotask(() => open && session.receive(bytes))
              return true
            },
            destroy: (reason: GearmanConnectionError) => closeLink(reason.message)
          },
          // Queued behind every write already made: pending writes are delivered first.
          close: () => queueMicrotask(() => closeLink(`connection to ${server} closed locally`))
        })
      }),
      ({ close }) => Effect.sync(close)
    ).pipe(Effect.map(({ link }) => link))
})
