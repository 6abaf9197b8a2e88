/** The log output every command (and a Driver child) installs; its own module so children load little. */
import type { Layer } from "effect"
import { Effect, FiberRef, Logger, LogLevel, Option, Schema } from "effect"
import type { LogFormat } from "./config.js"

/**
 * Whether the OTLP variables turn tracing on (docs/operations.md, "Traces"). Read from the
 * environment alone, so that a Driver child checks it without loading the tracing modules.
 */
export const tracingInEnv = (env: Readonly<Record<string, string | undefined>> = process.env): boolean =>
  (env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() ?? "") !== "" ||
  (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() ?? "") !== ""

/**
 * Logs go to stderr (stdout is the commands' output), in the chosen format. With tracing on, the
 * structured formats carry the current trace and span ids (`effect.traceId`, `effect.spanId`).
 */
export const loggerLayer = (format: LogFormat, traced: boolean = tracingInEnv()): Layer.Layer<never> => {
  const spanIds = <M, O>(logger: Logger.Logger<M, O>) => traced ? Logger.withSpanAnnotations(logger) : logger
  return Logger.replace(
    Logger.defaultLogger,
    format === "json"
      ? Logger.withConsoleError(spanIds(Logger.jsonLogger))
      : format === "logfmt"
      ? Logger.withConsoleError(spanIds(Logger.logfmtLogger))
      : Logger.prettyLogger({ stderr: true })
  )
}

/** The level names of `--log-level` (@effect/cli's), `GARIVINI_LOG_LEVEL` and the file's `log.level`. */
export const LOG_LEVELS = ["all", "trace", "debug", "info", "warning", "error", "fatal", "none"] as const
export type LogLevelName = typeof LOG_LEVELS[number]

/** A level as written in the variable or the file (any case; `warn` for warning). */
export const LogLevelText: Schema.Schema<LogLevel.LogLevel, string> = Schema.transform(
  Schema.String.pipe(Schema.filter((s) => levelOf(s) !== undefined, {
    message: (issue) => `${JSON.stringify(issue.actual)} is not one of ${LOG_LEVELS.join(", ")}`
  })),
  Schema.declare((u): u is LogLevel.LogLevel => LogLevel.allLevels.some((l) => l === u)),
  { strict: true, decode: (s) => levelOf(s)!, encode: (l) => l._tag.toLowerCase() }
)

/** The level of a name of LOG_LEVELS. */
export const levelNamed = (name: LogLevelName): LogLevel.LogLevel => levelOf(name)!

const levelOf = (text: string): LogLevel.LogLevel | undefined => {
  const name = text.trim().toLowerCase()
  return LogLevel.allLevels.find((l) => l._tag.toLowerCase() === (name === "warn" ? "warning" : name))
}

/**
 * `--log-level` is also @effect/cli's built-in option. When it comes before the command's own
 * flags, @effect/cli strips it and runs the command with that minimum level in its FiberRef, so
 * the command's own `--log-level` never sees it (after another flag, the built-in parse fails and
 * the command's option gets it). main.ts starts the command with this copy of Info instead
 * (compared by identity): finding it still there means the built-in was not given.
 */
export const levelNotGiven: LogLevel.LogLevel = { ...LogLevel.Info }

/** The level given with the built-in `--log-level`, if any. */
export const flagLevel: Effect.Effect<Option.Option<LogLevel.LogLevel>> = Effect.map(
  FiberRef.get(FiberRef.currentMinimumLogLevel),
  (level) => level === levelNotGiven ? Option.none() : Option.some(level)
)
