// A Gearman job as a worker handler receives it, with no job server behind it: what the handler
// sends (data, warnings, status) goes nowhere. For calling a handler directly.
import { Effect } from "effect"
import type { GearmanJob } from "../../src/gearman/GearmanWorker.js"

export const gearmanJobOf = (
  payload: string | Buffer,
  functionName: string,
  handle: string,
  server = "memory"
): GearmanJob => {
  const bytes = typeof payload === "string" ? Buffer.from(payload) : payload
  return {
    server,
    handle,
    functionName,
    unique: "",
    payload: bytes,
    text: () => bytes.toString("utf8"),
    sendData: () => Effect.void,
    sendWarning: () => Effect.void,
    sendStatus: () => Effect.void
  }
}
