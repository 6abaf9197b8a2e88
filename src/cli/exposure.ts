/**
 * What the command line warns about once at start, because no log line later would: a server
 * reachable beyond this machine (the Gearman protocols and the Driver console have no
 * authentication) and a database password given on the command line (every local user sees
 * it in `ps`).
 */
import { isIP } from "node:net"
import { Effect, Redacted } from "effect"

/** Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost). */
export const isLoopback = (host: string): boolean => {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1")
  if (h === "localhost" || h.endsWith(".localhost")) return true
  const v4 = h.startsWith("::ffff:") ? h.slice("::ffff:".length) : h
  if (isIP(v4) === 4) return v4.startsWith("127.")
  return isIP(h) === 6 && /^(0{0,4}:){1,7}0{0,3}1$|^::1$/.test(h)
}

/** One WARN line when `what` listens beyond loopback. */
export const warnIfExposed = (what: string, host: string, address: string) =>
  isLoopback(host)
    ? Effect.void
    : Effect.logWarning(
      `${what} listens on ${address}, beyond loopback: it has no authentication, so anyone who can reach it ` +
        `can submit, take or cancel jobs (the console: stop and scale workers); bind 127.0.0.1 or firewall it (docs/operations.md)`
    ).pipe(Effect.annotateLogs({ listen: address }))

/** Whether a mysql:// URL carries a password (a string that is not a URL has none to warn about). */
export const urlHasPassword = (url: string): boolean => {
  try {
    return new URL(url.trim()).password !== ""
  } catch {
    return false
  }
}

/** One WARN line when a `--db` flag carries a password. */
export const warnPasswordFlag = (dbFlags: ReadonlyArray<Redacted.Redacted<string>>) =>
  dbFlags.some((u) => urlHasPassword(Redacted.value(u)))
    ? Effect.logWarning(
      "a database password was given with --db: every local user can read it in `ps`; " +
        "put the URL in GARIVINI_DB or in a config file (--config) readable only by you"
    )
    : Effect.void
