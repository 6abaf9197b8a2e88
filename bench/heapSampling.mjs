// Preload for the bench's processes: V8's sampling heap profiler over the whole life of the
// process, counting objects the GC already collected (the young garbage a job leaves is what
// costs). Written at exit to $BENCH_HEAP_DIR (default the system's temp directory) as
// <command>-<pid>.heapprofile (Chrome DevTools opens it).
//   BENCH_NODE_ARGS="--import ./bench/heapSampling.mjs" vite-node bench/run.ts --only deployed
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { tmpdir } from "node:os"
import { join } from "node:path"

const session = new Session()
session.connect()
session.post("HeapProfiler.enable")
session.post("HeapProfiler.startSampling", {
  samplingInterval: 16384,
  includeObjectsCollectedByMinorGC: true,
  includeObjectsCollectedByMajorGC: true
})
let written = false
process.on("exit", () => {
  if (written) return
  written = true
  // A same-thread session answers synchronously, so this runs before the process is gone.
  session.post("HeapProfiler.stopSampling", (error, result) => {
    if ((error !== null && error !== undefined) || result === undefined) return
    const name = (process.argv[2] ?? "node").replace(/\W+/g, "-")
    writeFileSync(
      join(process.env.BENCH_HEAP_DIR ?? tmpdir(), `${name}-${process.pid}.heapprofile`),
      JSON.stringify(result.profile)
    )
  })
})
