/**
 * Who may use the console: the web token (when set) on every request, as a bearer header or a
 * cookie set from a `?token=` login link; and a CSRF token in every form, checked on every POST
 * (an HMAC of a per-process random secret: another site can post a form but cannot read the page
 * that holds the token).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { Option, Redacted } from "effect"

export const TOKEN_COOKIE = "garivini_web_token"

export interface WebAuth {
  readonly token: Option.Option<Redacted.Redacted<string>>
  /** The CSRF token of this process's pages. */
  readonly csrf: string
}

export const makeAuth = (token: Option.Option<Redacted.Redacted<string>>): WebAuth => ({
  token,
  csrf: createHmac("sha256", randomBytes(32)).update("garivini web csrf").digest("base64url")
})

/** Equal strings, compared in time independent of where they differ (hashes have one length). */
export const sameSecret = (given: string, expected: string): boolean =>
  timingSafeEqual(createHash("sha256").update(given).digest(), createHash("sha256").update(expected).digest())

/** Whether a request carries the token: bearer header or cookie. True when no token is set. */
export const authorized = (
  auth: WebAuth,
  headers: { readonly authorization?: string | undefined },
  cookies: Readonly<Record<string, string | undefined>>
): boolean =>
  Option.match(auth.token, {
    onNone: () => true,
    onSome: (token) => {
      const expected = Redacted.value(token)
      const bearer = /^Bearer\s+(.+)$/i.exec(headers.authorization ?? "")?.[1]?.trim()
      const cookie = cookies[TOKEN_COOKIE]
      return (bearer !== undefined && sameSecret(bearer, expected)) ||
        (cookie !== undefined && sameSecret(cookie, expected))
    }
  })

/** Whether a login link's `?token=` is the token. */
export const loginMatches = (auth: WebAuth, given: string): boolean =>
  Option.match(auth.token, { onNone: () => false, onSome: (token) => sameSecret(given, Redacted.value(token)) })

export const csrfMatches = (auth: { readonly csrf: string }, given: string | undefined): boolean =>
  given !== undefined && sameSecret(given, auth.csrf)
