// The chaos soak's ledger: every handler appends one JSON line per event to a file of its own
// process (appendFileSync: the line is in the kernel before the handler goes on, so a SIGKILL
// cannot lose a line already written). The harness reads every file at the end.
import { appendFileSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Schema } from "effect"

/**
 * What a job carries in its arg (JSON): the harness's id for it, its kind, how long its handler
 * sleeps (ms), and until when (ms since the epoch) it fails and asks to be retried.
 */
export const ChaosArg = Schema.Struct({
  id: Schema.String,
  kind: Schema.String,
  sleepMs: Schema.Number,
  failUntil: Schema.Number
})
export type ChaosArg = typeof ChaosArg.Type
export const encodeArg = Schema.encodeSync(Schema.parseJson(ChaosArg))
export const decodeArg = Schema.decodeUnknownEither(Schema.parseJson(ChaosArg))

/**
 * A ledger line: `start` when a handler begins, `fail` when it asked for a retry, `done` when it
 * finished successfully (before the row is completed). `t` is ms since the epoch, `p` the pid,
 * `w` the worker's name, `h` the stored job's handle (`dbid:jobid`).
 */
export const LedgerEntry = Schema.Struct({
  ev: Schema.Literal("start", "fail", "done"),
  id: Schema.String,
  t: Schema.Number,
  p: Schema.Number,
  w: Schema.String,
  h: Schema.String
})
export type LedgerEntry = typeof LedgerEntry.Type
const decodeEntry = Schema.decodeUnknownEither(Schema.parseJson(LedgerEntry))

/** Appends one entry to `file` (synchronously: it survives a SIGKILL right after). */
export const append = (file: string, entry: LedgerEntry): void => appendFileSync(file, `${JSON.stringify(entry)}\n`)

/** Every entry of every `*.ledger` file in `dir`; a torn last line (a kill mid-write) is counted, not parsed. */
export const readLedger = (dir: string): { readonly entries: ReadonlyArray<LedgerEntry>; readonly torn: number } => {
  const entries: Array<LedgerEntry> = []
  let torn = 0
  for (const name of readdirSync(dir)) {
    if (!name.endsWith(".ledger")) continue
    for (const line of readFileSync(join(dir, name), "utf8").split("\n")) {
      if (line === "") continue
      const entry = decodeEntry(line)
      if (entry._tag === "Right") entries.push(entry.right)
      else torn++
    }
  }
  entries.sort((a, b) => a.t - b.t)
  return { entries, torn }
}
