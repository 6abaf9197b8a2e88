/**
 * From worker modules to Driver jobs: loads a module, merges its attribute sets
 * (override > job > default), groups its functions into Driver jobs (prefix + group or name)
 * and applies `job_runtime_attributes`. The parent and every child compute the same thing.
 */
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { Effect } from "effect"
import { ConfigInvalid } from "../errors.js"
import { isDefinition, type Attributes, type Definition, type JobSpec } from "./define.js"
import { functionNameProblem } from "../protocol/gearman.js"

export interface DriverFunction {
  /** The key in the definition's `jobs`. */
  readonly key: string
  /** The Gearman function: prefix + key. */
  readonly registered: string
  readonly spec: JobSpec
  readonly attributes: Attributes
}

export interface DriverJob {
  /** prefix + (group or function key): the name the console shows. */
  readonly name: string
  /** `<module name>::<group or key>`: the original's key for `job_runtime_attributes`. */
  readonly runtimeKey: string
  readonly modulePath: string
  readonly moduleName: string
  readonly group: string
  readonly functions: ReadonlyArray<DriverFunction>
  readonly min: number
  readonly max: number
}

export interface LoadedModule {
  readonly path: string
  readonly name: string
  readonly definition: Definition
}

export interface RuntimeAttributes {
  readonly min_processes?: number | undefined
  readonly max_processes?: number | undefined
}

/** Imports a worker module and finds its definition (the default export, else the only exported one). */
export const loadModule = (path: string): Effect.Effect<LoadedModule, ConfigInvalid> =>
  Effect.gen(function*() {
    const absolute = Path.resolve(path)
    const exports = yield* Effect.tryPromise({
      try: (): Promise<Record<string, unknown>> => import(pathToFileURL(absolute).href),
      catch: (e) =>
        new ConfigInvalid({
          field: "module",
          reason: `cannot load ${path}: ${e instanceof Error ? e.message : String(e)}`,
          cause: e
        })
    })
    const candidates = isDefinition(exports["default"])
      ? [exports["default"]]
      : Object.values(exports).filter(isDefinition)
    const definition = candidates[0]
    if (definition === undefined || candidates.length > 1) {
      return yield* Effect.fail(
        new ConfigInvalid({
          field: "module",
          reason:
            `${path} must export one Driver.define(...) definition (as default export), found ${candidates.length}`
        })
      )
    }
    const name = definition.name ?? Path.basename(absolute).replace(/\.[^.]*$/, "")
    return { path: absolute, name, definition }
  })

const merged = (definition: Definition, spec: JobSpec): Attributes => ({
  ...definition.default,
  ...spec.attributes,
  ...definition.override
})

/** The module's Driver jobs, in declaration order of their first function. */
export const driverJobs = (
  module: LoadedModule,
  runtime: Readonly<Record<string, RuntimeAttributes>> = {}
): Effect.Effect<ReadonlyArray<DriverJob>, ConfigInvalid> =>
  Effect.gen(function*() {
    const { definition } = module
    const prefix = definition.prefix ?? `${module.name}::`
    const groups = new Map<string, { functions: Array<DriverFunction>; min?: number; max?: number }>()
    for (const [key, spec] of Object.entries(definition.jobs)) {
      const attributes = merged(definition, spec)
      for (const [what, value] of [["min", attributes.min], ["max", attributes.max]] as const) {
        if (value !== undefined && (!Number.isInteger(value) || value < 0)) {
          return yield* Effect.fail(
            new ConfigInvalid({ field: `${module.name}.${key}.${what}`, reason: `${value} is not an integer >= 0` })
          )
        }
      }
      const group = attributes.group ?? key
      const entry = groups.get(group) ?? { functions: [] }
      // The first function of a group that sets min/max decides (0 counts, unlike the original's `||=`).
      for (const what of ["min", "max"] as const) {
        const value = attributes[what]
        if (value === undefined) continue
        if (entry[what] === undefined) entry[what] = value
        else if (entry[what] !== value)
          yield* Effect.logWarning(`${what} redefined in group ${group} at ${module.name}::${key}`)
      }
      // Refused here, at the Driver's start, rather than by every child it would fork.
      const nameProblem = functionNameProblem(prefix + key)
      if (nameProblem !== undefined)
        return yield* Effect.fail(new ConfigInvalid({ field: `${module.name}.${key}`, reason: nameProblem }))
      entry.functions.push({ key, registered: prefix + key, spec, attributes })
      groups.set(group, entry)
    }
    const jobs: Array<DriverJob> = []
    for (const [group, entry] of groups) {
      const name = prefix + group
      const runtimeKey = `${module.name}::${group}`
      const override = runtime[name] ?? runtime[runtimeKey] ?? {}
      const min = override.min_processes ?? entry.min ?? 1
      const max = Math.max(override.max_processes ?? entry.max ?? 1, min)
      jobs.push({
        name,
        runtimeKey,
        modulePath: module.path,
        moduleName: module.name,
        group,
        functions: entry.functions,
        min,
        max
      })
    }
    return jobs
  })
