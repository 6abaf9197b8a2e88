/**
 * A job's arg as an operator reads it: pretty JSON, UTF-8 text, or hex for binary; bounded so a
 * 16 MiB arg does not become a 16 MiB page.
 */
export interface ArgView {
  readonly kind: "json" | "text" | "hex" | "empty"
  readonly text: string
  readonly bytes: number
  /** Whether only the first part is shown. */
  readonly truncated: boolean
}

/** Characters of text or JSON shown, at most. */
export const TEXT_LIMIT = 4096
/** Bytes shown as hex, at most (16 a line). */
export const HEX_LIMIT = 1024

const utf8 = new TextDecoder("utf-8", { fatal: true })

const hexDump = (bytes: Uint8Array): string => {
  const lines: Array<string> = []
  for (let offset = 0; offset < bytes.length; offset += 16) {
    const row = bytes.subarray(offset, offset + 16)
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ")
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("")
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`)
  }
  return lines.join("\n")
}

export const viewArg = (arg: Uint8Array): ArgView => {
  if (arg.length === 0) return { kind: "empty", text: "", bytes: 0, truncated: false }
  let text: string | undefined
  try {
    text = utf8.decode(arg)
  } catch {
    text = undefined
  }
  // Text with control characters other than whitespace is shown as bytes: it is not meant to be read.
  if (text !== undefined && !/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text)) {
    let kind: ArgView["kind"] = "text"
    try {
      text = JSON.stringify(JSON.parse(text), null, 2)
      kind = "json"
    } catch {
      // not JSON: shown as it is
    }
    return {
      kind,
      text: text.length > TEXT_LIMIT ? text.slice(0, TEXT_LIMIT) : text,
      bytes: arg.length,
      truncated: text.length > TEXT_LIMIT
    }
  }
  return {
    kind: "hex",
    text: hexDump(arg.subarray(0, HEX_LIMIT)),
    bytes: arg.length,
    truncated: arg.length > HEX_LIMIT
  }
}
