// The one host:port parser (src/hostPort.ts) and the readers built on it: --gearmand, the
// Driver's server list, --listen and the connection's own parse.
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { checkServer } from "../../src/cli/config.js"
import { parseServers } from "../../src/cli/driver.js"
import { ConfigInvalid } from "../../src/errors.js"
import { parseServer } from "../../src/gearman/connection.js"
import { parseListen } from "../../src/jobserver/tcpServer.js"
import { formatHostPort, parseHost, parseHostPort } from "../../src/hostPort.js"

const server = { field: "gearmand" }
const ok = (text: string, options = server) => Either.getOrThrow(parseHostPort(text, options))
const refused = (text: string, options = server): ConfigInvalid => {
  const result = parseHostPort(text, options)
  assert.isTrue(Either.isLeft(result), `${text} was accepted`)
  return Either.isLeft(result) ? result.left : (undefined as never)
}

describe("parseHostPort", () => {
  it("reads IPv4 addresses and host names", () => {
    assert.deepStrictEqual(ok("127.0.0.1:4730"), { host: "127.0.0.1", port: 4730 })
    assert.deepStrictEqual(ok("gm1.internal:4731"), { host: "gm1.internal", port: 4731 })
    assert.deepStrictEqual(ok("localhost:65535"), { host: "localhost", port: 65535 })
    assert.deepStrictEqual(ok("h:1"), { host: "h", port: 1 })
  })

  it("reads IPv6 in brackets, and writes it back in brackets", () => {
    assert.deepStrictEqual(ok("[::1]:4730"), { host: "::1", port: 4730 })
    assert.deepStrictEqual(ok("[fe80::1:2]:80"), { host: "fe80::1:2", port: 80 })
    assert.deepStrictEqual(ok("[::ffff:127.0.0.1]:4730"), { host: "::ffff:127.0.0.1", port: 4730 })
    assert.strictEqual(formatHostPort({ host: "::1", port: 4730 }), "[::1]:4730")
    assert.strictEqual(formatHostPort({ host: "10.0.0.1", port: 4730 }), "10.0.0.1:4730")
  })

  it("refuses bad inputs with a ConfigInvalid naming the flag and the value", () => {
    const zero = refused("h:0")
    assert.instanceOf(zero, ConfigInvalid)
    assert.strictEqual(zero.field, "gearmand")
    assert.strictEqual(
      zero.message,
      "invalid configuration gearmand: \"h:0\" has port 0: a job server is never there (1-65535)"
    )
    assert.include(refused("::1:4730").message, "\"::1:4730\" is an IPv6 address: put it in brackets")
    assert.include(refused("h:65536").message, "port 65536")
    assert.include(refused("[h]:4730").message, "not an IPv6 address")
    for (
      const text of [
        "",
        "h",
        ":4730",
        "h:",
        "h:x",
        "h:47 30",
        "h :4730",
        "a:b:4730",
        "[::1]",
        "[::1]4730",
        "[::1:4730",
        "h:123456",
        "u@h:1",
        "h:-1",
        "h:+1"
      ]
    ) {
      const error = refused(text)
      assert.strictEqual(error.field, "gearmand", text)
      assert.include(error.message, JSON.stringify(text), text)
    }
    assert.strictEqual(refused("x", { field: "server" }).field, "server")
  })

  it("takes a default port or host only where the reader has one", () => {
    const driver = { field: "server", defaultPort: 4730 }
    assert.deepStrictEqual(ok("gm1", driver), { host: "gm1", port: 4730 })
    assert.deepStrictEqual(ok("[::1]", driver), { host: "::1", port: 4730 })
    const listen = { field: "listen", defaultHost: "127.0.0.1", allowPortZero: true }
    assert.deepStrictEqual(ok("4730", listen), { host: "127.0.0.1", port: 4730 })
    assert.deepStrictEqual(ok(":4731", listen), { host: "127.0.0.1", port: 4731 })
    assert.deepStrictEqual(ok("[::]:0", listen), { host: "::", port: 0 })
    assert.strictEqual(refused("4730").field, "gearmand", "a lone number is a host without a port for a job server")
  })

  it("a host alone: a name or an address, IPv6 with or without brackets", () => {
    assert.deepStrictEqual(parseHost("[::1]", "console-host"), Either.right("::1"))
    assert.deepStrictEqual(parseHost("::1", "console-host"), Either.right("::1"))
    assert.deepStrictEqual(parseHost("0.0.0.0", "console-host"), Either.right("0.0.0.0"))
    assert.isTrue(Either.isLeft(parseHost("h:1", "console-host")))
    assert.isTrue(Either.isLeft(parseHost("[h]", "console-host")))
  })
})

describe("every host:port reader uses it", () => {
  it("--gearmand (checkServer): [::1]:PORT accepted, port 0 refused", () => {
    assert.deepStrictEqual(checkServer("[::1]:4730"), Either.right("[::1]:4730"))
    assert.isTrue(Either.isLeft(checkServer("127.0.0.1:0")))
    assert.isTrue(Either.isLeft(checkServer("::1:4730")))
  })

  it("the Driver's server list: brackets kept, port 4730 added where missing", () => {
    assert.deepStrictEqual(parseServers("[::1]:4731,[::1] h"), Either.right(["[::1]:4731", "[::1]:4730", "h:4730"]))
    assert.isTrue(Either.isLeft(parseServers("h:0")))
  })

  it("--listen: brackets, a lone port, port 0 for any free port", () => {
    assert.deepStrictEqual(parseListen(" [::1]:0 "), { host: "::1", port: 0 })
    assert.isUndefined(parseListen("::1:4730"))
  })

  it("the connection's parse: IPv6 unbracketed for node:net; an unchecked name goes to port 4730", () => {
    assert.deepStrictEqual(parseServer("[::1]:4731"), { host: "::1", port: 4731 })
    assert.deepStrictEqual(parseServer("gm1:4732"), { host: "gm1", port: 4732 })
    assert.deepStrictEqual(parseServer("gm1"), { host: "gm1", port: 4730 })
  })
})
