// The `Gearman` service every role uses: submit jobs, read queue depths, serve functions.
// `layer` talks to real job servers over TCP; `layerMemory` to in-process job servers with
// gearmand's semantics, through the very same client and worker code.
import type { Schedule, Scope } from "effect"
import { Context, Duration, Effect, Layer } from "effect"
import * as Admin from "./admin.js"
import type { FunctionStatus } from "../protocol/admin.js"
import * as Client from "./GearmanClient.js"
import { netTransport, type Transport } from "./connection.js"
import type {
  GearmanAdminError,
  GearmanConnectionError,
  GearmanInvalidArgument,
  GearmanServerError,
  GearmanSubmitError
} from "./errors.js"
import { JobServer, type JobServerOptions } from "../jobserver/JobServer.js"
import { memoryTransport, type MemoryServers } from "./memoryTransport.js"
import * as Worker from "./GearmanWorker.js"

export interface GearmanService {
  readonly servers: ReadonlyArray<string>
  /** Runs a foreground job and waits for its result. */
  readonly submit: (
    fn: string,
    payload: Client.Payload,
    options?: Client.SubmitOptions
  ) => Effect.Effect<Client.JobResult, GearmanSubmitError>
  /** Queues a background job; succeeds once a server has accepted it (JOB_CREATED). */
  readonly submitBackground: (
    fn: string,
    payload: Client.Payload,
    options?: Client.BackgroundOptions
  ) => Effect.Effect<Client.GearmanJobHandle, Client.BackgroundSubmitError>
  /** Queues many background jobs in one pipelined batch; per job its handle or its error. */
  readonly submitBackgroundAll: Client.Client["submitBackgroundAll"]
  readonly getStatus: (
    handle: Client.GearmanJobHandle
  ) => Effect.Effect<Client.JobStatus, GearmanConnectionError | GearmanServerError>
  /** Per-function `status` summed over every server that answers. */
  readonly queueDepths: () => Effect.Effect<
    ReadonlyMap<string, FunctionStatus>,
    GearmanConnectionError | GearmanAdminError
  >
  /**
   * Serves the functions until the scope closes (graceful: in-flight jobs finish first). A
   * function name with whitespace or control characters is refused before anything is registered.
   */
  readonly serve: <R>(
    handlers: Worker.Handlers<R>,
    options?: Worker.ServeOptions
  ) => Effect.Effect<void, GearmanInvalidArgument, Scope.Scope | R>
  /** Per-server admin commands. */
  readonly admin: Admin.Admin
  /** Servers the client is connected to right now. */
  readonly upServers: () => ReadonlyArray<string>
  /** The client's connection to a server that is up now, numbered (new after each reconnect). */
  readonly connectionId: Client.Client["connectionId"]
  /** Told when a client connection that was up is lost (its server and number). */
  readonly onConnectionLost: Client.Client["onConnectionLost"]
}

export class Gearman extends Context.Tag("garivini/Gearman")<Gearman, GearmanService>() {}

export interface GearmanOptions {
  /** Job servers as "host:port". */
  readonly servers: ReadonlyArray<string>
  readonly reconnect?: Schedule.Schedule<unknown>
  readonly clientId?: string
  /** Ask for WORK_EXCEPTION (default true). */
  readonly exceptions?: boolean
  /** Largest frame accepted from a server (default 64 MiB). */
  readonly maxFrame?: number
  readonly connectTimeout?: Duration.DurationInput
  readonly keepAliveDelay?: Duration.DurationInput
  /** Drop a connection whose server leaves a request unanswered this long (default 30 s). */
  readonly heartbeat?: Duration.DurationInput
}

export const make = (
  options: GearmanOptions & { readonly transport: Transport }
): Effect.Effect<GearmanService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const shared = {
      servers: options.servers,
      transport: options.transport,
      ...(options.reconnect ? { reconnect: options.reconnect } : {}),
      ...(options.clientId !== undefined ? { clientId: options.clientId } : {}),
      ...(options.maxFrame !== undefined ? { maxFrame: options.maxFrame } : {}),
      ...(options.heartbeat !== undefined ? { heartbeat: options.heartbeat } : {})
    }
    const client = yield* Client.make({
      ...shared,
      ...(options.exceptions !== undefined ? { exceptions: options.exceptions } : {})
    })
    const admin = Admin.make({ servers: options.servers, transport: options.transport })
    return {
      servers: options.servers,
      submit: client.submit,
      submitBackground: client.submitBackground,
      submitBackgroundAll: client.submitBackgroundAll,
      getStatus: client.getStatus,
      queueDepths: admin.queueDepths,
      serve: (handlers, serveOptions) => Worker.serve(handlers, { ...shared, ...serveOptions }),
      admin,
      upServers: client.upServers,
      connectionId: client.connectionId,
      onConnectionLost: client.onConnectionLost
    } satisfies GearmanService
  })

/** Live layer: real job servers over TCP. */
export const layer = (options: GearmanOptions): Layer.Layer<Gearman> =>
  Layer.scoped(
    Gearman,
    make({
      ...options,
      transport: netTransport({
        ...(options.connectTimeout !== undefined ? { connectTimeout: options.connectTimeout } : {}),
        ...(options.keepAliveDelay !== undefined ? { keepAliveDelay: options.keepAliveDelay } : {})
      })
    })
  )

/** In-process job servers, by name; hand the same map to several layers to share servers. */
export const makeMemoryServers = (
  names: ReadonlyArray<string> = ["memory"],
  options: JobServerOptions = {}
): MemoryServers => new Map(names.map((name) => [name, new JobServer({ handlePrefix: `H:${name}`, ...options })]))

/** In-memory layer: a fresh in-process job server (or the given ones), same client and worker code. */
export const layerMemory = (
  options: Omit<GearmanOptions, "servers"> & { readonly servers?: MemoryServers } = {}
): Layer.Layer<Gearman> =>
  Layer.scoped(
    Gearman,
    Effect.suspend(() => {
      const servers = options.servers ?? makeMemoryServers()
      // No heartbeat by default: in-process servers cannot half-close, and a periodic timer would
      // replay for every simulated interval when a test's TestClock jumps.
      return make({
        heartbeat: Duration.infinity,
        ...options,
        servers: [...servers.keys()],
        transport: memoryTransport(servers)
      })
    })
  )
