/**
 * Typed configuration of the job layer: shards (MySQL databases) and storage tuning.
 * Passwords are `Redacted` from the moment they are read; nothing here logs them.
 */
import { resolve as resolvePath } from "node:path"
import type { Duration } from "effect"
import { Config, ConfigError, Either, Redacted } from "effect"
import { ConfigInvalid } from "../errors.js"
import * as Defaults from "../roles/defaults.js"

/** One MySQL database holding a `job` table. `id` is the job handles' `dbid`. */
export interface ShardConfig {
  readonly id: number
  readonly host: string
  readonly port: number
  readonly database: string
  readonly user: string
  readonly password: Redacted.Redacted<string>
  /** Pool size (default 10). */
  readonly maxConnections?: number
  /** How long a connect may take before the shard counts as unreachable (default 5 s). */
  readonly connectTimeout?: Duration.DurationInput
}

export interface StorageConfig {
  readonly shards: ReadonlyArray<ShardConfig>
  /** How long a shard that failed a connect or query is avoided for new jobs (default 30 s). */
  readonly coolOff?: Duration.DurationInput
}

export const DEFAULT_COOL_OFF = Defaults.storage.coolOff
export const DEFAULT_DB_URL = "mysql://root@127.0.0.1:3306/garivini"

/**
 * Parses `mysql://user:pass@host:port/db[?id=N]`. Without `?id`, the shard takes `defaultId`
 * (its 1-based position in the list).
 */
export const parseShardUrl = (
  url: string,
  defaultId: number,
  field = "db"
): Either.Either<ShardConfig, ConfigInvalid> => {
  const bad = (reason: string) => Either.left(new ConfigInvalid({ field, reason }))
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    // The input may hold a password: never echo it back.
    return bad("not a URL of the form mysql://user:pass@host:port/db")
  }
  if (parsed.protocol !== "mysql:") return bad(`scheme ${parsed.protocol} is not mysql:`)
  const database = decodePart(parsed.pathname.replace(/^\//, ""))
  const user = decodePart(parsed.username)
  const password = decodePart(parsed.password)
  // A malformed %-escape (`p%zz`): named by part, never shown (it may be in the password).
  if (database === undefined) return bad("the database name has a malformed %-escape")
  if (user === undefined) return bad("the user name has a malformed %-escape")
  if (password === undefined) return bad("the password has a malformed %-escape (write % as %25)")
  if (database === "" || database.includes("/")) return bad("the URL names no database (mysql://host/db)")
  if (!/^[A-Za-z0-9_$]+$/.test(database))
    return bad(`database name ${JSON.stringify(database)} has unsupported characters`)
  const idText = parsed.searchParams.get("id")
  const id = idText === null ? defaultId : /^\d+$/.test(idText) ? Number(idText) : Number.NaN
  if (!Number.isSafeInteger(id) || id <= 0)
    return bad(`shard id ${JSON.stringify(idText ?? String(defaultId))} is not a positive integer`)
  const port = parsed.port === "" ? 3306 : Number(parsed.port)
  if (port === 0) return bad("port 0 is not a port (1-65535)")
  return Either.right({
    id,
    host: parsed.hostname === "" ? "127.0.0.1" : parsed.hostname,
    port,
    database,
    user: user === "" ? "root" : user,
    password: Redacted.make(password)
  })
}

/** A %-encoded URL part, or undefined when an escape is malformed (decodeURIComponent throws). */
const decodePart = (text: string): string | undefined => {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}

/** The prefix of a SQLite target: `sqlite:./garivini.db`, `sqlite:/var/lib/garivini.db`. */
export const SQLITE_PREFIX = "sqlite:"

/** Where the `garivini` command keeps jobs when no database is given (the embedded default). */
export const DEFAULT_SQLITE_TARGET = "sqlite:./garivini.db"

/** Whether a `--db` / `GARIVINI_DB` / file `db` entry names a SQLite file rather than a MySQL shard. */
export const isSqliteTarget = (target: string): boolean => target.trim().startsWith(SQLITE_PREFIX)

/** The file of `sqlite:<path>`, made absolute (against the working directory) so logs show where it is. */
export const parseSqliteTarget = (target: string, field = "db"): Either.Either<string, ConfigInvalid> => {
  const path = target.trim().slice(SQLITE_PREFIX.length)
  if (path === "" || path.startsWith("//")) {
    return Either.left(
      new ConfigInvalid({
        field,
        reason: `${JSON.stringify(target)} names no file: use sqlite:./garivini.db or sqlite:/absolute/path.db`
      })
    )
  }
  return Either.right(resolvePath(path))
}

/** Checks a set of shards: at least one, ids unique. */
export const validateShards = (
  shards: ReadonlyArray<ShardConfig>
): Either.Either<ReadonlyArray<ShardConfig>, ConfigInvalid> => {
  if (shards.length === 0) return Either.left(new ConfigInvalid({ field: "db", reason: "no shard configured" }))
  const seen = new Set<number>()
  for (const s of shards) {
    if (seen.has(s.id)) return Either.left(new ConfigInvalid({ field: "db", reason: `shard id ${s.id} is used twice` }))
    seen.add(s.id)
  }
  return Either.right(shards)
}

/** Shards from a list of URLs (position gives the default id). */
export const shardsFromUrls = (
  urls: ReadonlyArray<string>,
  field = "db"
): Either.Either<ReadonlyArray<ShardConfig>, ConfigInvalid> =>
  Either.flatMap(Either.all(urls.map((u, i) => parseShardUrl(u, i + 1, field))), validateShards)

/** Where `GARIVINI_DB` (or another list of targets) puts the jobs. */
export type DbTargets =
  | { readonly _tag: "Sqlite"; readonly filename: string }
  | { readonly _tag: "Mysql"; readonly shards: ReadonlyArray<ShardConfig> }

/**
 * One `sqlite:` file or MySQL URLs separated by commas or spaces (blank: the embedded default
 * file), as `GARIVINI_DB` holds them. A bad value is `ConfigInvalid` naming `field`.
 */
export const parseDbTargets = (text: string, field = "GARIVINI_DB"): Either.Either<DbTargets, ConfigInvalid> => {
  const targets = text.split(/[\s,]+/).filter((s) => s !== "")
  if (targets.length === 0) targets.push(DEFAULT_SQLITE_TARGET)
  if (!targets.some(isSqliteTarget))
    return Either.map(shardsFromUrls(targets, field), (shards) => ({ _tag: "Mysql", shards }))
  if (targets.length > 1)
    return Either.left(
      new ConfigInvalid({ field, reason: "a sqlite: database cannot be combined with other databases" })
    )
  return Either.map(parseSqliteTarget(targets[0]!, field), (filename) => ({ _tag: "Sqlite", filename }))
}

/**
 * Shards from the environment: `GARIVINI_DB` holds one URL or several separated by commas or
 * spaces (it is redacted: it may hold passwords). Defaults to the local MariaDB.
 */
export const shardsConfig: Config.Config<ReadonlyArray<ShardConfig>> = Config.redacted("GARIVINI_DB").pipe(
  Config.withDefault(Redacted.make(DEFAULT_DB_URL)),
  Config.mapOrFail((value) =>
    shardsFromUrls(Redacted.value(value).split(/[\s,]+/).filter((s) => s !== "")).pipe(
      Either.mapLeft((e) => ConfigError.InvalidData(["GARIVINI_DB"], e.message))
    )
  )
)
