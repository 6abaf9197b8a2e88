// `vite-node bench/workerPath.ts [N] [rounds]`: CPU and heap allocated per job on a worker's whole
// path in one process, with no socket and no database: `Worker.serve` (the worker helper, over the
// Gearman worker) fed by a scripted job server that answers every GRAB with a JOB_ASSIGN_UNIQ
// carrying a stored job's worker JSON until N jobs went out, and counts the WORK_COMPLETEs;
// completions go to the memory storage. What is left of a deployed worker's CPU per job beyond
// this is the process's own (sockets, mysql2, a second JIT and GC per process).
// Bytes cross in batches per turn of the event loop, as over a socket.
import { Effect, Layer } from "effect"
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { encodeWorkerJson } from "../src/Job.js"
import type { Transport } from "../src/gearman/connection.js"
import * as Gearman from "../src/gearman/Gearman.js"
import { Decoder, PacketType, response } from "../src/protocol/gearman.js"
import * as Worker from "../src/roles/Worker.js"
import { layerMemory } from "../src/storage/Storage.js"

const n = Number(process.argv[2] ?? 200_000)
const rounds = Number(process.argv[3] ?? 3)
const FUNCTION = "bench"

const payloads = Array.from({ length: 1024 }, (_, i) =>
  Buffer.from(encodeWorkerJson({
    jobid: i + 1,
    dbid: 1,
    funcname: FUNCTION,
    arg: Buffer.from(String(i)),
    uniqkey: null,
    coalesce: null,
    runAfter: 0,
    flag: "shim",
    failcount: 0,
    lease: "0123456789abcdef0123456789abcdef"
  })))

/** The scripted server's state: jobs still to hand out, and a callback when all came back. */
const server = {
  remaining: 0,
  sent: 0,
  completed: 0,
  done: (): void => {}
}

const scriptedTransport: Transport = {
  open: (_name, handlers) =>
    Effect.sync(() => {
      const decoder = new Decoder("REQ")
      let out: Array<Buffer> = []
      const flush = () => {
        const batch = out
        out = []
        handlers.onData(batch.length === 1 ? batch[0]! : Buffer.concat(batch))
      }
      const reply = (bytes: Buffer) => {
        if (out.push(bytes) === 1) setImmediate(flush)
      }
      const noop = response(PacketType.NOOP)
      let worker = false
      return {
        write: (bytes: Buffer) => {
          for (const packet of decoder.push(bytes).packets) {
            switch (packet.type) {
              case PacketType.GRAB_JOB_UNIQ:
                if (server.remaining > 0) {
                  server.remaining--
                  const i = server.sent++
                  reply(response(PacketType.JOB_ASSIGN_UNIQ, [`H:bench:${i}`, FUNCTION, "", payloads[i % 1024]!]))
                } else reply(response(PacketType.NO_JOB))
                break
              case PacketType.PRE_SLEEP:
                if (server.remaining > 0) reply(response(PacketType.NOOP))
                break
              case PacketType.CAN_DO:
                if (!worker) wakers.push(() => reply(noop))
                worker = true
                break
              case PacketType.WORK_COMPLETE:
                if (++server.completed === server.sent && server.remaining === 0) server.done()
                break
              case PacketType.OPTION_REQ:
                reply(response(PacketType.OPTION_RES, packet.args))
                break
              case PacketType.ECHO_REQ:
                reply(response(PacketType.ECHO_RES, packet.args))
                break
            }
          }
          return true
        },
        destroy: () => {}
      }
    })
}

/** Every connection's NOOP: wakes the sleeping worker as gearmand does when jobs arrive. */
const wakers: Array<() => void> = []

// V8's sampling heap profiler, collected objects included: the sum of its samples estimates the
// bytes allocated (one sample per 16 KB on average).
const session = new Session()
session.connect()
const post = (method: string, params?: object) =>
  new Promise<unknown>((resolve, reject) =>
    session.post(method, params, (error, result) => (error ? reject(error) : resolve(result)))
  )
interface SamplingNode {
  readonly selfSize: number
  readonly children: ReadonlyArray<SamplingNode>
}
const totalSize = (node: SamplingNode): number => node.children.reduce((sum, c) => sum + totalSize(c), node.selfSize)
const sampling = (on: boolean) =>
  on
    ? post("HeapProfiler.startSampling", {
      samplingInterval: 16384,
      includeObjectsCollectedByMinorGC: true,
      includeObjectsCollectedByMajorGC: true
    })
    : post("HeapProfiler.stopSampling").then((r) => {
      const profile = (r as { profile: { head: SamplingNode } }).profile
      // WORKER_PATH_HEAP=FILE keeps the last profile (Chrome DevTools opens it).
      const keep = process.env["WORKER_PATH_HEAP"]
      if (keep !== undefined) writeFileSync(keep, JSON.stringify(profile))
      return totalSize(profile.head)
    })

const round = (count: number, measureHeap: boolean) =>
  Effect.gen(function*() {
    if (measureHeap) yield* Effect.promise(() => sampling(true))
    const cpuUs = yield* Effect.async<number>((resume) => {
      const cpu0 = process.cpuUsage()
      server.remaining = count
      server.sent = 0
      server.completed = 0
      server.done = () => {
        const cpu = process.cpuUsage(cpu0)
        resume(Effect.succeed(cpu.user + cpu.system))
      }
      for (const wake of wakers) wake()
    })
    const bytes = measureHeap ? yield* Effect.promise(() => sampling(false) as Promise<number>) : 0
    return { cpuUs, bytes }
  })

const program = Effect.gen(function*() {
  yield* Worker.serve({ [FUNCTION]: () => Effect.void }, { concurrency: 8 })
  yield* round(Math.min(n, 100_000), false) // warm-up: let V8 optimize
  for (let r = 1; r <= rounds; r++) {
    // CPU without the profiler's cost, then allocation on a round of its own.
    const { cpuUs } = yield* round(n, false)
    const { bytes } = yield* round(n, true)
    console.log(
      `round ${r}: ${n} jobs, ${(cpuUs / n).toFixed(2)} µs CPU a job, ${
        (bytes / n / 1024).toFixed(2)
      } KB allocated a job`
    )
  }
})

const layers = Layer.mergeAll(
  layerMemory(),
  Layer.scoped(Gearman.Gearman, Gearman.make({ servers: ["scripted:4730"], transport: scriptedTransport }))
)
Effect.runPromise(Effect.scoped(program.pipe(Effect.provide(layers)))).then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
