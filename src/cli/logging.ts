/** The log output every command (and a Driver child) installs; its own module so children load little. */
import type { Layer } from "effect"
import { Logger } from "effect"
import type { LogFormat } from "./config.js"

/** Logs go to stderr (stdout is the commands' output), in the chosen format. */
export const loggerLayer = (format: LogFormat): Layer.Layer<never> =>
  Logger.replace(
    Logger.defaultLogger,
    format === "json"
      ? Logger.withConsoleError(Logger.jsonLogger)
      : format === "logfmt"
      ? Logger.withConsoleError(Logger.logfmtLogger)
      : Logger.prettyLogger({ stderr: true })
  )
