// Property suite for the Driver's console lines (src/driver/Console.ts): random lines get an
// answer of the console's shape (an ERR line for what is not a command), and the process counts
// change only through a valid set_* command, to exactly the values it gave. No child process is
// started: the Supervisor is made but never reconciled.
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Runtime } from "effect"
import type { DriverJob } from "../../src/driver/attributes.js"
import * as Console from "../../src/driver/Console.js"
import * as Supervisor from "../../src/driver/Supervisor.js"
import { eventually } from "../gearman/gearmand.js"
import { check, checkAsync, chunked } from "../support/fuzz.js"
import { freePort } from "../support/ports.js"
import { quiet } from "../support/logs.js"

const job = (name: string, min: number, max: number): DriverJob => ({
  name,
  runtimeKey: `m::${name}`,
  modulePath: "/nonexistent.mjs",
  moduleName: "m",
  group: name,
  functions: [],
  min,
  max
})
const JOBS = [job("alpha", 0, 2), job("beta", 1, 3)]

const word = fc.oneof(
  fc.constantFrom(
    "status",
    "show",
    "set_min_processes",
    "set_max_processes",
    "set_processes",
    "kill",
    "killall",
    "help",
    "*",
    "alpha",
    "beta",
    "gamma",
    "0",
    "1",
    "5",
    "-1",
    "1.5",
    "007",
    "99999999999999999999",
    "",
    " ",
    "\t",
    "\r",
    "é"
  ),
  fc.string({ maxLength: 8 }).map((s) => s.replace(/\n/g, ""))
)
/** Lines short of quit / shutdown, which end the connection or the Driver. */
const lineArb = fc.tuple(fc.array(word, { maxLength: 5 }), fc.constantFrom(" ", "  ", "\t"))
  .map(([words, separator]) => words.join(separator))
  .filter((line) => !["quit", "shutdown"].includes(line.split(/\s+/)[0] ?? ""))

type Counts = ReadonlyArray<readonly [string, number, number]>
const counts = (supervisor: Supervisor.Supervisor): Counts =>
  supervisor.states().map((s) => [s.job.name, s.min, s.max] as const)

/** What a set_* line may do: which job, and the counts it names (digits only), else nothing. */
const expected = (line: string, before: Counts): Counts => {
  const words = line.split(/\s+/)
  while (words.length > 0 && words[words.length - 1] === "") words.pop()
  const [command, name, a, b] = words
  const digits = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined)
  return before.map(([n, min, max]) => {
    if (n !== name) return [n, min, max] as const
    const next = command === "set_min_processes" ?
      [digits(a), max] :
      command === "set_max_processes" ?
      [min, digits(a)] :
      command === "set_processes"
      ? [digits(a), digits(b)]
      : [min, max]
    const [newMin, newMax] = next
    return newMin === undefined || newMax === undefined || newMax < newMin
      ? [n, min, max] as const
      : [n, newMin, newMax] as const
  })
}

describe("fuzz: the Driver console", () => {
  it.scoped("random lines: an answer of the console's shape; counts change only through a valid set_* command", () =>
    Effect.gen(function*() {
      const supervisor = yield* Supervisor.make(JOBS, { servers: ["127.0.0.1:1"], workerOptions: () => ({}) })
      const run = Runtime.runSync(yield* Effect.runtime<never>())
      check(
        3000,
        fc.property(lineArb, (line) => {
          const before = counts(supervisor)
          const answer = run(Console.execute(supervisor, line))
          assert.strictEqual(answer._tag, "Lines", line)
          if (answer._tag !== "Lines") return
          assert.strictEqual(answer.lines[answer.lines.length - 1], ".")
          for (const l of answer.lines) assert.notInclude(l, "\n")
          const command = line.split(/\s+/)[0] ?? ""
          if (
            !["status", "show", "set_min_processes", "set_max_processes", "set_processes", "kill", "killall", "help"]
              .includes(command)
          ) {
            assert.match(answer.lines[0]!, /^ERR unknown_command: /)
          }
          // A change is an OK to a valid set_* line, to the values it names; anything else changes
          // nothing (a line may also be refused, e.g. over a cap).
          const after = counts(supervisor)
          if (JSON.stringify(after) !== JSON.stringify(before)) {
            assert.deepStrictEqual(answer.lines, ["OK", "."], line)
            assert.deepStrictEqual(after, expected(line, before), line)
          }
          if (JSON.stringify(expected(line, before)) === JSON.stringify(before))
            assert.deepStrictEqual(after, before, line)
          // No process is ever started or signalled by a line.
          assert.isTrue(
            supervisor.states().every((s) => s.processes.size === 0)
          )
        })
      )
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("over TCP, in any chunking: one answer a line, and the console keeps serving", () =>
    Effect.gen(function*() {
      const supervisor = yield* Supervisor.make(JOBS, { servers: ["127.0.0.1:1"], workerOptions: () => ({}) })
      const port = yield* freePort
      yield* Console.serve(supervisor, { listen: { _tag: "Tcp", host: "127.0.0.1", port }, onShutdown: Effect.void })
      const run = Runtime.runPromise(yield* Effect.runtime<never>())
      yield* Effect.promise(() =>
        checkAsync(
          40,
          fc.asyncProperty(
            fc.array(lineArb, { minLength: 1, maxLength: 6 }),
            fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 4 }),
            async (lines, sizes) => {
              const socket = Net.connect({ host: "127.0.0.1", port })
              let received = ""
              socket.on("data", (d) => (received += d.toString("utf8")))
              await new Promise((r) => socket.once("connect", r))
              // ASCII keeps the chunking from splitting a character (the console decodes per chunk).
              const text = lines.map((l) => l.replace(/[^\x20-\x7e\t\r]/g, "?") + "\r\n").join("")
              for (const chunk of chunked(Buffer.from(text, "latin1"), sizes)) {
                socket.write(chunk)
                await new Promise((r) => setImmediate(r))
              }
              await run(eventually(
                Effect.sync(() => received.split("\r\n.\r\n").length - 1 === lines.length),
                "one answer a line",
                10_000
              ))
              socket.destroy()
            }
          )
        )
      )
    }).pipe(Effect.provide(quiet)))
})
