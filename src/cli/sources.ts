/**
 * Where a setting comes from, key by key: its flag, else its `GARIVINI_*` variable, else the
 * config file, else the default the caller holds. The environment and the file are each a
 * `ConfigProvider` (the file decoded with its Schema first, unknown keys refused, then given to
 * `ConfigProvider.fromJson`), and every key is an Effect `Config` read from them in turn; a bad
 * value is a `ConfigInvalid` naming the variable, or the key and the file.
 *
 * Why not `Options.withFallbackConfig` from @effect/cli: it reads its `Config` while the flags
 * are parsed, from the provider in place then, but the file is only known once `--config` — a
 * flag itself — is parsed; the variable and the file name a setting differently
 * (`GARIVINI_BATCH_MAX_SIZE`, `queueRunner.batchMaxSize`), so one provider cannot serve both
 * without losing which source a bad value came from; and its failures are @effect/cli
 * `ValidationError`s, not the `ConfigInvalid` (exit 2, one line naming the field) every command
 * reports. So the order is spelt out here, once, for every command.
 */
import { Config, ConfigError, ConfigProvider, Effect, Either, Option, ParseResult, Schema } from "effect"
import { ConfigInvalid } from "../errors.js"

export interface Sources {
  /** `GARIVINI_*` variables; a blank one counts as unset. */
  readonly env: ConfigProvider.ConfigProvider
  /** The config file, decoded and checked with its Schema (empty without a file). */
  readonly file: ConfigProvider.ConfigProvider
  /** The file's path, named in errors. */
  readonly path: string | undefined
}

/** The process environment as a provider; blank variables are left out (`GARIVINI_DB=` unsets). */
export const environment = (vars: NodeJS.ProcessEnv = process.env): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromMap(
    new Map(Object.entries(vars).filter((e): e is [string, string] => e[1] !== undefined && e[1].trim() !== ""))
  )

/** The sources of a command: the environment, and the decoded file at `path` (if any). */
export const sources = (path: string | undefined, decodedFile: unknown): Sources => ({
  env: environment(),
  file: ConfigProvider.fromJson(decodedFile ?? {}),
  path
})

/** One setting: how it is read from its variable and from its key in the file (either may be absent). */
export interface Key<A> {
  readonly env?: { readonly name: string; readonly config: Config.Config<A> } | undefined
  readonly file?: { readonly path: string; readonly config: Config.Config<A> } | undefined
}

/** The first problem a Schema found, in its own words. */
const issue = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)[0]?.message ?? "invalid"

/** Text decoded with `schema`; a failure is the Config's InvalidData. */
const decodeText = <A>(schema: Schema.Schema<A, string>) => (text: string) =>
  Either.mapLeft(Schema.decodeEither(schema)(text), (e) => ConfigError.InvalidData([], issue(e)))

/** `a.b.c` as a Config nested under `a`, then `b`. */
const at = <A>(path: string, leaf: (name: string) => Config.Config<A>): Config.Config<A> => {
  const parts = path.split(".")
  return parts.slice(0, -1).reduceRight((c, part) => Config.nested(c, part), leaf(parts[parts.length - 1]!))
}

/** A value written as text in the variable and in the file, decoded with one Schema from both. */
export const key = <A>(
  env: string | undefined,
  file: string | undefined,
  schema: Schema.Schema<A, string>
): Key<A> => {
  const text = (name: string) => Config.string(name).pipe(Config.mapOrFail(decodeText(schema)))
  return {
    env: env === undefined ? undefined : { name: env, config: text(env) },
    file: file === undefined ? undefined : { path: file, config: at(file, text) }
  }
}

/** Items separated by commas or spaces in a variable. */
export const splitList = (text: string): ReadonlyArray<string> => text.split(/[\s,]+/).filter((s) => s !== "")

/** A list: comma- or space-separated in the variable, an array in the file. */
export const listKey = <A>(
  env: string | undefined,
  file: string | undefined,
  schema: Schema.Schema<A, string>
): Key<ReadonlyArray<A>> => {
  const decode = decodeText(schema)
  return {
    env: env === undefined ? undefined : {
      name: env,
      config: Config.string(env).pipe(Config.mapOrFail((text) => Either.all(splitList(text).map(decode))))
    },
    file: file === undefined
      ? undefined
      : { path: file, config: at(file, (name) => Config.array(Config.string().pipe(Config.mapOrFail(decode)), name)) }
  }
}

/** `ConfigError`s are trees (And / Or): the first leaf's message says what is wrong. */
const reasonOf = (error: ConfigError.ConfigError): string =>
  error._op === "And" || error._op === "Or" ? reasonOf(error.left) : error.message

const readFrom = <A>(provider: ConfigProvider.ConfigProvider, config: Config.Config<A>, field: string) =>
  Effect.withConfigProvider(Config.option(config), provider).pipe(
    Effect.mapError((e) => new ConfigInvalid({ field, reason: reasonOf(e), cause: e }))
  )

/** The flag's value, else the variable's, else the file's: the first source that has the key. */
export const read = <A>(
  from: Sources,
  setting: Key<A>,
  flag: Option.Option<A> = Option.none()
): Effect.Effect<Option.Option<A>, ConfigInvalid> =>
  Effect.gen(function*() {
    if (Option.isSome(flag)) return flag
    if (setting.env !== undefined) {
      const value = yield* readFrom(from.env, setting.env.config, setting.env.name)
      if (Option.isSome(value)) return value
    }
    if (setting.file === undefined) return Option.none()
    return yield* readFrom(from.file, setting.file.config, `${setting.file.path} (in ${from.path ?? "the file"})`)
  })

/** `read`, with `undefined` for a value nobody gave (the roles' options take that as "default"). */
export const readOrUndefined = <A>(from: Sources, setting: Key<A>, flag?: Option.Option<A>) =>
  Effect.map(read(from, setting, flag), Option.getOrUndefined)

// -- the texts settings are written in --------------------------------------------------------

/** A number as `Number()` reads it (`"lots"` is refused, saying so). */
export const NumberText = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const n = Number(text)
    return text.trim() !== "" && Number.isFinite(n)
      ? ParseResult.succeed(n)
      : ParseResult.fail(new ParseResult.Type(ast, text, `${JSON.stringify(text)} is not a number`))
  },
  encode: (n) => ParseResult.succeed(String(n))
})
