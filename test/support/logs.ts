// Loggers for tests.
import { Logger } from "effect"

/** No log output: for fuzzing and tests that provoke errors by the thousand. */
export const quiet = Logger.replace(Logger.defaultLogger, Logger.none)
