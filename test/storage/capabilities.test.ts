// What a MySQL/MariaDB shard makes of the server it finds (and what the options force).
import { assert, describe, it } from "@effect/vitest"
import { detectCapabilities } from "../../src/storage/sql/mysql.js"

const MiB = 1024 * 1024
const caps = (version: string, options = {}) => {
  const c = detectCapabilities(version, 16 * MiB, options)
  return [c.skipLocked, c.returning, c.maxArgBytes]
}

describe("shard capabilities", () => {
  it("SKIP LOCKED from MariaDB 10.6 and MySQL 8.0.1; RETURNING from MariaDB 10.5 only; statements send args as hex", () => {
    const full = 16 * MiB - 64 * 1024
    assert.deepStrictEqual(caps("10.4.34-MariaDB"), [false, false, full / 2])
    assert.deepStrictEqual(caps("10.5.27-MariaDB-log"), [false, true, full])
    assert.deepStrictEqual(caps("10.6.0-MariaDB"), [true, true, full])
    assert.deepStrictEqual(caps("10.11.19-MariaDB-0+deb12u1"), [true, true, full])
    assert.deepStrictEqual(caps("8.0.0"), [false, false, full / 2])
    assert.deepStrictEqual(caps("8.0.1"), [true, false, full / 2])
    assert.deepStrictEqual(caps("8.4.3"), [true, false, full / 2])
    assert.deepStrictEqual(caps("5.7.44-log"), [false, false, full / 2])
  })

  it("the options force each one", () => {
    assert.deepStrictEqual(caps("10.11.19-MariaDB", { skipLocked: false, insertMode: "statements" }), [
      false,
      false,
      8 * MiB - 32 * 1024
    ])
    assert.deepStrictEqual(caps("10.4.34-MariaDB", { skipLocked: true, insertMode: "returning" }), [
      true,
      true,
      (16 * MiB - 64 * 1024) / 2
    ])
    assert.deepStrictEqual(caps("10.11.19-MariaDB", { maxAllowedPacket: MiB }), [true, true, MiB - 64 * 1024])
  })
})
