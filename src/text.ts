/** Bounded quoting of untrusted text in errors and log lines: a bad input is never copied whole. */

/** How many characters of a bad input are quoted back in an error or a log line. */
export const QUOTE_MAX_CHARS = 64

/** `text` as a JSON string, cut to its first `max` characters (the rest counted, not copied). */
export const quoteBounded = (text: string, max: number = QUOTE_MAX_CHARS): string =>
  text.length <= max
    ? JSON.stringify(text)
    : `${JSON.stringify(text.slice(0, max))}… (${text.length} UTF-16 units in all)`

/** `text` cut to its first `max` characters, saying how many more there were. */
export const clip = (text: string, max: number): string =>
  text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`
