/** Garivini's public API. */
export * as Client from "./roles/Client.js"
export * as Storage from "./storage/Storage.js"
export * as Job from "./Job.js"
export * as Config from "./config.js"
export * as Migrate from "./storage/migrate.js"
export * from "./errors.js"
export type { InsertOutcome, Job as StoredJob, JobFlag, JobHandle, NewJob, RunAt } from "./Job.js"
export type { ShardConfig, StorageConfig } from "./config.js"
