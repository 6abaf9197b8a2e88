/**
 * The one `host:port` parser: job servers (`--gearmand`, the Driver's `server`), the embedded
 * server's `--listen` and the Driver console's address. An IPv6 address goes in brackets
 * (`[::1]:4730`), as in URLs: a bare `::1:4730` is ambiguous, so it is refused rather than guessed.
 * Database URLs are parsed as URLs (config.ts), not here.
 */
import { isIPv6 } from "node:net"
import { Either } from "effect"
import { ConfigInvalid } from "./errors.js"

export interface HostPort {
  /** A hostname or an IP address, IPv6 without its brackets. */
  readonly host: string
  readonly port: number
}

export interface HostPortOptions {
  /** The flag or key the text came from, named in the error. */
  readonly field: string
  /** The port when the text names only a host (none: a port is required). */
  readonly defaultPort?: number
  /** The host when the text is only a port, `4730` or `:4730` (none: a host is required). */
  readonly defaultHost?: string
  /** Port 0 (any free port) makes sense for a listener only: a job server is never there. */
  readonly allowPortZero?: boolean
}

const PORT = /^\d{1,5}$/

/** Parses `host:port`, `[v6]:port` and, where the options allow, `host`, `[v6]`, `port` or `:port`. */
export const parseHostPort = (text: string, options: HostPortOptions): Either.Either<HostPort, ConfigInvalid> => {
  const bad = (reason: string) =>
    Either.left(new ConfigInvalid({ field: options.field, reason: `${JSON.stringify(text)} ${reason}` }))
  const expected = `is not ${options.defaultHost === undefined ? "host" : "[host]"}${
    options.defaultPort === undefined ? ":port" : "[:port]"
  } (an IPv6 address in brackets: [::1]:4730)`

  let host: string
  let portText: string | undefined
  if (text.startsWith("[")) {
    const close = text.indexOf("]")
    if (close < 0) return bad(expected)
    host = text.slice(1, close)
    if (!isIPv6(host)) return bad("has brackets around something that is not an IPv6 address")
    const rest = text.slice(close + 1)
    if (rest !== "" && !rest.startsWith(":")) return bad(expected)
    portText = rest === "" ? undefined : rest.slice(1)
  } else {
    const colons = text.split(":").length - 1
    if (colons > 1) return bad(isIPv6(text) ? "is an IPv6 address: put it in brackets, [::1]:4730" : expected)
    const at = text.indexOf(":")
    host = at < 0 ? text : text.slice(0, at)
    portText = at < 0 ? undefined : text.slice(at + 1)
    // A lone number is a port where a default host exists (`--listen 4730`), else a host name.
    if (at < 0 && options.defaultHost !== undefined && PORT.test(text)) {
      host = ""
      portText = text
    }
    if (host === "" && options.defaultHost !== undefined) host = options.defaultHost
    if (host === "" || /[\s[\]/@]/.test(host)) return bad(expected)
  }

  if (portText === undefined) {
    return options.defaultPort === undefined ? bad(expected) : Either.right({ host, port: options.defaultPort })
  }
  if (!PORT.test(portText)) return bad(expected)
  const port = Number(portText)
  if (port > 65535) return bad(`has port ${port}: a port is 1-65535`)
  if (port === 0 && options.allowPortZero !== true) return bad("has port 0: a job server is never there (1-65535)")
  return Either.right({ host, port })
}

/** `host:port` as it is written back: an IPv6 address in brackets. */
export const formatHostPort = ({ host, port }: HostPort): string => `${host.includes(":") ? `[${host}]` : host}:${port}`

/** A host alone (the Driver's `console_host`): a name or an address, IPv6 with or without brackets. */
export const parseHost = (text: string, field: string): Either.Either<string, ConfigInvalid> => {
  const bracketed = /^\[(.*)\]$/.exec(text)?.[1]
  const host = bracketed ?? text
  if (isIPv6(host)) return Either.right(host)
  return bracketed !== undefined || host === "" || /[\s[\]/@:]/.test(host)
    ? Either.left(new ConfigInvalid({ field, reason: `${JSON.stringify(text)} is not a host name or address` }))
    : Either.right(host)
}
