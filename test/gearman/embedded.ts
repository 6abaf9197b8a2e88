// Serves the in-process JobServer on a loopback TCP port: the same bytes as in memory, over
// a socket. Shows the core is ready to be an embedded job server.
import * as Net from "node:net"
import { Effect, Scope } from "effect"
import { JobServer, type JobServerOptions } from "../../src/gearman/JobServer.js"

export const embeddedJobServer = (options: JobServerOptions = {}): Effect.Effect<{ readonly server: string; readonly port: number }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Net.Server>((resume) => {
      const core = new JobServer({ handlePrefix: "H:embedded", ...options })
      const listener = Net.createServer((socket) => {
        socket.setNoDelay(true)
        const session = core.connect(socket.remoteAddress ?? "-", (bytes) => void socket.write(bytes), () => socket.destroy())
        socket.on("data", session.receive)
        socket.on("close", session.disconnect)
        socket.on("error", () => socket.destroy())
      })
      listener.listen(0, "127.0.0.1", () => resume(Effect.succeed(listener)))
    }),
    (listener) =>
      Effect.async<void>((resume) => {
        listener.close(() => resume(Effect.void))
        // close() waits for open sockets; the tests' own connections are closed by their scopes.
      })
  ).pipe(
    Effect.map((listener) => {
      const address = listener.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      return { server: `127.0.0.1:${port}`, port }
    })
  )
