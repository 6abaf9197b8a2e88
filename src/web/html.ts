/**
 * HTML built by one tagged template that escapes every interpolated value unless it is already
 * `Html`: job args, function names and unique keys are hostile input, and no page concatenates
 * strings by hand.
 */

/** Markup that is safe as it is (built by `html`, or a constant). */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }

/** Text as HTML text or an attribute value (quoted): the five significant characters escaped. */
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!)

/** What may be interpolated: text and numbers are escaped; absent values and `false` render nothing. */
export type Part = Html | string | number | boolean | null | undefined | ReadonlyArray<Part>

const render = (part: Part): string => {
  if (part instanceof Html) return part.text
  if (part === null || part === undefined || part === false || part === true) return ""
  if (typeof part === "number") return String(part)
  if (typeof part === "string") return escapeHtml(part)
  return part.map(render).join("")
}

export const html = (strings: TemplateStringsArray, ...parts: ReadonlyArray<Part>): Html =>
  new Html(strings.reduce((out, s, i) => out + s + (i < parts.length ? render(parts[i]!) : ""), ""))

/** Trusted markup (constants of this module tree only). */
export const raw = (text: string): Html => new Html(text)
