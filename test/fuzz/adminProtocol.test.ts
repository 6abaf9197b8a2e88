// Property suite for the admin text protocol's readers and parsers (src/protocol/admin.ts):
// random lines and random `status` output never throw, and an accepted answer holds exactly
// the rows its lines say (a line that does not parse rejects the answer; nothing is half-read).
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import * as Admin from "../../src/protocol/admin.js"
import { GearmanProtocolError } from "../../src/gearman/errors.js"
import { check, chunked } from "../support/fuzz.js"

/** Text as a job server may print it: words, tabs, digits, ERR and dots, but no line breaks. */
const piece = fc.oneof(
  fc.constantFrom(
    "ERR",
    "ERR ",
    "ERRands",
    ".",
    "OK",
    "OK ",
    "v1.",
    "-",
    "-1",
    "01",
    "\t",
    " ",
    ":",
    " :",
    "+",
    "%",
    "%zz",
    "9007199254740993",
    "0"
  ),
  fc.string({ maxLength: 6 }).map((s) => s.replace(/[\r\n]/g, "")),
  fc.nat().map(String)
)
const lineArb = fc.array(piece, { maxLength: 8 }).map((parts) => parts.join(""))
const linesArb = fc.array(lineArb, { maxLength: 8 }).chain((lines) =>
  fc.boolean().map((end) => (end ? [...lines, "."] : lines))
)

const count = fc.oneof(fc.nat({ max: 5000 }), fc.constant(Number.MAX_SAFE_INTEGER))
/** Function names as gearmand may hold them (no tab or line break: those are another matter). */
const nameArb = fc.oneof(
  fc.constantFrom("ERR", "ERR x", "ERRands", ".", "OK", "", "-", "rev x", "ERR UNKNOWN_COMMAND"),
  fc.string({ maxLength: 12 }).map((s) => s.replace(/[\t\r\n]/g, ""))
)

const isCount = (n: number) => Number.isSafeInteger(n) && n >= 0

const parsers = {
  status: Admin.parseStatus,
  prioritystatus: Admin.parsePriorityStatus,
  workers: Admin.parseWorkers,
  "show jobs": Admin.parseShowJobs,
  ok: Admin.parseOk,
  version: Admin.parseVersion,
  getpid: Admin.parsePid
}

describe("fuzz: admin protocol parsers", () => {
  it("random lines never throw; an accepted list has one row per line, every count a count", () =>
    check(
      1500,
      fc.property(linesArb, (lines) => {
        for (const parse of Object.values(parsers)) {
          const result: Either.Either<unknown, string> = parse(lines)
          if (Either.isLeft(result)) assert.isString(result.left)
        }
        const status = Admin.parseStatus(lines)
        if (Either.isRight(status)) {
          const body = lines.slice(0, -1)
          assert.strictEqual(status.right.length, body.length)
          status.right.forEach((row, i) => {
            assert.isTrue(
              isCount(row.total) && isCount(row.running) && isCount(row.workers),
              `counts of ${JSON.stringify(body[i])}`
            )
            const cols = body[i]!.split("\t")
            assert.strictEqual(row.name, cols.slice(0, -3).join("\t"))
            assert.deepStrictEqual([row.total, row.running, row.workers], cols.slice(-3).map(Number))
          })
        }
        const priority = Admin.parsePriorityStatus(lines)
        if (Either.isRight(priority)) {
          for (const row of priority.right) assert.isTrue([row.high, row.normal, row.low, row.workers].every(isCount))
        }
        const jobs = Admin.parseShowJobs(lines)
        if (Either.isRight(jobs)) { for (const row of jobs.right) assert.isTrue(isCount(row.retries)) }
        const pid = Admin.parsePid(lines)
        if (Either.isRight(pid)) assert.isTrue(isCount(pid.right))
      })
    ))

  it("gearmand's status output parses back to exactly its rows, whatever the function names", () =>
    check(
      800,
      fc.property(
        fc.array(fc.record({ name: nameArb, total: count, running: count, workers: count }), { maxLength: 6 }),
        (rows) => {
          const lines = [...rows.map((r) => `${r.name}\t${r.total}\t${r.running}\t${r.workers}`), "."]
          assert.deepStrictEqual(Either.getOrThrow(Admin.parseStatus(lines)), rows)
          // What the reader collects from the wire is the same answer.
          const reader = new Admin.AnswerReader("status")
          const answer = reader.push(Buffer.from(lines.map((l) => l + "\n").join(""), "utf8"))
          assert.deepStrictEqual(answer, Either.right(lines))
        }
      )
    ))

  it("a status line that does not parse rejects the answer instead of being half-read", () =>
    check(
      800,
      fc.property(
        fc.array(fc.record({ name: nameArb, total: count, running: count, workers: count }), {
          minLength: 1,
          maxLength: 4
        }),
        fc.nat(),
        lineArb,
        (rows, at, garbage) => {
          const lines = rows.map((r) => `${r.name}\t${r.total}\t${r.running}\t${r.workers}`)
          lines.splice(at % (lines.length + 1), 0, garbage)
          const result = Admin.parseStatus([...lines, "."])
          if (Either.isLeft(result)) return
          // Accepted: the garbage was itself a well-formed row, read as the text says.
          const cols = garbage.split("\t")
          assert.isAtLeast(cols.length, 4)
          assert.isTrue(cols.slice(-3).every((c) => /^\d+$/.test(c)))
          assert.strictEqual(result.right.length, rows.length + 1)
        }
      )
    ))
})

describe("fuzz: admin answer reader", () => {
  const commands = [
    "status",
    "prioritystatus",
    "workers",
    "show jobs",
    "version",
    "getpid",
    "maxqueue f 1",
    "cancel job H:x:1"
  ]

  it("an answer followed by anything, in any chunking, reads as that answer", () =>
    check(
      800,
      fc.property(
        fc.constantFrom(...commands),
        fc.array(fc.record({ name: nameArb, n: count }), { maxLength: 5 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 6 }),
        (command, rows, trailer, sizes) => {
          const shape = Admin.answerShape(command)
          const lines = shape === "line" ? ["OK 1"] : [...rows.map((r) => `${r.name}\t${r.n}\t${r.n}\t${r.n}`), "."]
          const bytes = Buffer.concat([
            Buffer.from(lines.map((l) => l + "\r\n").join(""), "utf8"),
            Buffer.from(trailer)
          ])
          const reader = new Admin.AnswerReader(command)
          let result: ReturnType<Admin.AnswerReader["push"]>
          for (const chunk of chunked(bytes, sizes)) result ??= reader.push(chunk)
          assert.deepStrictEqual(result, Either.right(lines))
        }
      )
    ))

  it("random bytes end in an answer, a typed error or a wait, within the bound", () =>
    check(
      800,
      fc.property(
        fc.constantFrom(...commands),
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 40 }),
            lineArb.map((l) => Buffer.from(l + "\n"))
          ),
          { maxLength: 12 }
        ),
        (command, chunks) => {
          const reader = new Admin.AnswerReader(command, 256)
          let seen = 0
          for (const chunk of chunks) {
            const result = reader.push(chunk)
            seen += chunk.length
            if (result === undefined) {
              // Still waiting: only while within the bound (plus the chunk being read).
              assert.isAtMost(seen, 256 + 1024 * 1024)
              continue
            }
            if (Either.isLeft(result)) assert.instanceOf(result.left, GearmanProtocolError)
            else assert.isTrue(Admin.answerComplete(Admin.answerShape(command), result.right))
            // Settled: later bytes change nothing.
            assert.strictEqual(reader.push(Buffer.from("more\n")), result)
            return
          }
        }
      )
    ))

  it("an endless list is cut at the bound", () => {
    const reader = new Admin.AnswerReader("status", 4096)
    let result: ReturnType<Admin.AnswerReader["push"]>
    for (let i = 0; i < 1000 && result === undefined; i++) result = reader.push(Buffer.from(`f${i}\t1\t0\t1\n`))
    assert.isTrue(result !== undefined && Either.isLeft(result))
  })
})

describe("admin protocol regressions (shrunk by the fuzz suite)", () => {
  it("a function named ERR… at the top of status is a row, not an error", () => {
    assert.deepStrictEqual(
      Admin.parseStatus(["ERRands\t1\t0\t1", "."]),
      Either.right([{ name: "ERRands", total: 1, running: 0, workers: 1 }])
    )
    assert.deepStrictEqual(
      Admin.parseStatus(["ERR x\t2\t0\t0", "."]),
      Either.right([{ name: "ERR x", total: 2, running: 0, workers: 0 }])
    )
    assert.isFalse(Admin.answerComplete("list", ["ERRands\t1\t0\t1"]))
    assert.isTrue(Admin.answerComplete("list", ["ERR UNKNOWN_COMMAND Unknown+server+command"]))
  })

  it("negative or unsafe counts reject the line", () => {
    assert.isTrue(Either.isLeft(Admin.parseStatus(["f\t-1\t0\t0", "."])))
    assert.isTrue(Either.isLeft(Admin.parseStatus(["f\t9007199254740993\t0\t0", "."])))
    assert.isTrue(Either.isLeft(Admin.parsePid(["OK -5"])))
  })

  it("lines after the list's end are not waited for", () => {
    const reader = new Admin.AnswerReader("status")
    assert.deepStrictEqual(reader.push(Buffer.from("f\t1\t0\t1\n.\ng\t2\t0\t0\n")), Either.right(["f\t1\t0\t1", "."]))
  })
})
