// The Gearman layer's public surface.
export * from "./errors.js"
export {
  Gearman,
  layer,
  layerMemory,
  make,
  makeMemoryServers,
  type GearmanOptions,
  type GearmanService
} from "./Gearman.js"
export type {
  BackgroundOptions,
  JobEvent,
  GearmanJobHandle,
  JobResult,
  JobStatus,
  Payload,
  Priority,
  SubmitOptions
} from "./GearmanClient.js"
export type { FunctionSpec, Handler, Handlers, GearmanJob, ServeOptions } from "./GearmanWorker.js"
export type { FunctionStatus, JobInfo, PriorityStatus, WorkerInfo } from "../protocol/admin.js"
export type { Admin } from "./admin.js"
export { JobServer, type JobServerOptions, type Session } from "../jobserver/JobServer.js"
export { defaultReconnectSchedule, netTransport, type Transport } from "./connection.js"
export { memoryTransport, type MemoryServers } from "./memoryTransport.js"
export * as GearmanMetrics from "./metrics.js"
