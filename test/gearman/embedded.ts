// The embedded job server (`garivini gearmand`) on a free loopback port for one test's scope.
import type { Scope } from "effect"
import { Effect } from "effect"
import { serve, type TcpServerOptions } from "../../src/jobserver/tcpServer.js"

export const embeddedJobServer = (
  options: TcpServerOptions = {}
): Effect.Effect<{ readonly server: string; readonly port: number }, never, Scope.Scope> =>
  Effect.map(Effect.orDie(serve({ port: 0, ...options })), (s) => ({ server: s.address, port: s.port }))
