// The port helper: ports of this worker's range, each handed out once while its scope lasts, held
// (nobody else can bind it) until released, and taken back when the scope closes.
import * as Net from "node:net"
import { assert, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { closedPort, freePort, heldPort, isReserved, portRange } from "./ports.js"

/** Whether another socket can listen on the port now. */
const canBind = (port: number) =>
  Effect.async<boolean>((resume) => {
    const server = Net.createServer()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen(port, "127.0.0.1", () => server.close(() => resume(Effect.succeed(true))))
  })

/** Whether a connection to the port is refused. */
const refused = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", () => resume(Effect.succeed(true)))
  })

it.scopedLive("a held port is bound until released and reserved until its scope closes", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const held = yield* Scope.extend(heldPort, scope)
    assert.isTrue(held.port >= portRange.first && held.port <= portRange.last)
    assert.isTrue(portRange.last < 32768, "below the ephemeral range")
    assert.isFalse(yield* canBind(held.port), "held: nobody else can bind it")
    yield* held.release
    assert.isTrue(yield* canBind(held.port), "released: a child may bind it")
    // Reserved while its scope lasts: never handed out twice.
    assert.isTrue(isReserved(held.port))
    const others = yield* Effect.forEach(Array.from({ length: 20 }), () => Scope.extend(freePort, scope))
    assert.notInclude(others, held.port)
    assert.strictEqual(new Set(others).size, others.length, "each port handed out once")
    assert.isTrue(others.every(isReserved))
    yield* Scope.close(scope, Exit.void)
    assert.isFalse([held.port, ...others].some(isReserved), "taken back when the scope closed")
  }))

it.scopedLive("a closed port refuses connections", () =>
  Effect.gen(function*() {
    assert.isTrue(yield* refused(yield* closedPort))
  }))
