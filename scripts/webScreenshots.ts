// `npm run docs:screenshots`: seeds a demo (memory storage, two shards; an in-process job server
// with a worker) and writes a PNG of each page of the web console to docs/web/, as a laptop and
// a phone show them. Needs Debian's Chromium (apt-get install -y chromium).
import { existsSync, mkdirSync } from "node:fs"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { chromium } from "playwright-core"
import * as Gearman from "../src/gearman/Gearman.js"
import * as Client from "../src/roles/Client.js"
import type { JobSpec } from "../src/roles/Client.js"
import * as Storage from "../src/storage/Storage.js"
import { serve } from "../src/web/WebConsole.js"

const CHROMIUM = process.env["GARIVINI_CHROMIUM"] ?? "/usr/bin/chromium"
const OUT = "docs/web"

const demoJobs = (): ReadonlyArray<JobSpec> => {
  const now = Math.floor(Date.now() / 1000)
  const jobs: Array<JobSpec> = []
  for (let i = 0; i < 140; i++) {
    jobs.push({
      funcname: "email.send",
      uniqkey: `welcome-${1000 + i}`,
      runAt: i < 90 ? now - 30 - i * 7 : now + 60 * i,
      arg: JSON.stringify({ to: `user${1000 + i}@example.com`, template: "welcome", locale: i % 3 === 0 ? "fr" : "en" })
    })
  }
  for (let i = 0; i < 36; i++) {
    jobs.push({
      funcname: "image.resize",
      uniqkey: `img-${i}`,
      runAt: i < 4 ? "never" : now - i,
      arg: JSON.stringify({ src: `s3://uploads/${i}.jpg`, sizes: [64, 256, 1024] })
    })
  }
  for (let i = 0; i < 12; i++)
    jobs.push({ funcname: "report.nightly", runAt: now + 3600 * (i + 1), arg: `tenant=${i}` })
  jobs.push({
    funcname: "webhook.deliver",
    uniqkey: "order-42",
    runAt: "never",
    arg: Uint8Array.from([0, 1, 2, 0xfe, 0xff, 0x10])
  })
  return jobs
}

const program = Effect.gen(function*() {
  if (!existsSync(CHROMIUM)) {
    return yield* Effect.dieMessage(`Chromium is not at ${CHROMIUM}: apt-get install -y chromium`)
  }
  mkdirSync(OUT, { recursive: true })
  yield* Client.insertJobs(demoJobs())
  const gearman = yield* Gearman.Gearman
  // A worker that never finishes: the job servers' table shows a worker and a running job.
  yield* Effect.forkScoped(gearman.serve({ "email.send": () => Effect.never }))
  yield* Effect.forkScoped(gearman.submitBackground("email.send", "{}"))
  const { url } = yield* serve({ host: "127.0.0.1", port: 0 })
  const base = url.replace(/\/$/, "")
  const browser = yield* Effect.acquireRelease(
    Effect.promise(() => chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })),
    (b) => Effect.promise(() => b.close())
  )
  const shoot = (name: string, path: string, viewport: { width: number; height: number }, before?: string) =>
    Effect.promise(async () => {
      const page = await browser.newPage({ viewport, deviceScaleFactor: 1 })
      await page.goto(`${base}${path}`)
      if (before !== undefined) await page.click(before)
      await page.screenshot({ path: `${OUT}/${name}.png`, fullPage: true })
      await page.close()
      console.log(`${OUT}/${name}.png`)
    })
  const laptop = { width: 1280, height: 720 }
  const phone = { width: 390, height: 760 }
  yield* Effect.sleep("1 second")
  yield* shoot("overview", "/", laptop)
  yield* shoot("overview-per-shard", "/?shards=1", laptop)
  yield* shoot("jobs", "/jobs?function=email.send&limit=15", laptop)
  const [first] = yield* Effect.flatMap(Storage.Storage, (s) => s.list({ funcname: "email.send", limit: 1 }))
  yield* shoot("job", `/job/${first!.dbid}:${first!.jobid}`, laptop)
  const [binary] = yield* Effect.flatMap(Storage.Storage, (s) => s.list({ uniqkey: "order-42", limit: 1 }))
  yield* shoot("job-binary", `/job/${binary!.dbid}:${binary!.jobid}`, laptop)
  yield* shoot("confirm", `/job/${binary!.dbid}:${binary!.jobid}`, laptop, `button[data-action="retry"]`)
  yield* shoot("overview-phone", "/", phone)
  yield* shoot("jobs-phone", "/jobs?state=never", phone)
})

program.pipe(
  Effect.scoped,
  Effect.provide(Layer.merge(Storage.layerMemory({ shards: [1, 2] }), Gearman.layerMemory())),
  NodeRuntime.runMain
)
