/** The Driver's public surface: declare workers (`define`, `job`, `durable`) and run them. */
export { define, durable, job, isDefinition, DefinitionTypeId } from "./define.js"
export type {
  Attributes,
  Definition,
  DefinitionInput,
  Hook,
  JobAttributes,
  JobContext,
  JobSpec,
  DriverWorkerOptions
} from "./define.js"
export { make, run, type DriverHandle, type DriverOptions } from "./Driver.js"
export { ConsoleUnavailable } from "./Console.js"
export type { DriverJob, RuntimeAttributes } from "./attributes.js"
