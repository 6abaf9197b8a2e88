// `npm run docs:screenshots`: seeds a demo (memory storage, two shards; an in-process job server
// with a worker; an hour of completions and failures; a paused function; a stand-in for the
// Driver's console speaking its protocol) and writes a PNG of each page of the web console to
// docs/web/, as a laptop and a phone show them. Needs Debian's Chromium (apt-get install -y chromium).
import { existsSync, mkdirSync } from "node:fs"
import * as Net from "node:net"
import { NodeRuntime } from "@effect/platform-node"
import { Clock, Effect, Layer } from "effect"
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

/** A clock stopped at `ms`: the seeded completions and failures land in past minutes. */
const clockAt = (ms: number): Clock.Clock => ({
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => ms,
  currentTimeMillis: Effect.succeed(ms),
  unsafeCurrentTimeNanos: () => BigInt(ms) * 1_000_000n,
  currentTimeNanos: Effect.succeed(BigInt(ms) * 1_000_000n),
  sleep: () => Effect.void
})

/** An hour of work: jobs completed each minute (a daily-looking wave) and a few failures. */
const seedHour = Effect.gen(function*() {
  const storage = yield* Storage.Storage
  const now = Date.now()
  for (let k = 0; k < 60; k++) {
    const completed = Math.round(38 + 22 * Math.sin(k / 7) + (k % 5) * 3)
    const failed = k % 11 === 0 ? 6 : k % 4 === 0 ? 2 : 0
    yield* Effect.withClock(
      Effect.gen(function*() {
        const stored = yield* Client.insertJobs(
          Array.from({ length: completed + failed }, () => ({ funcname: "seed", runAt: "never" as const }))
        )
        const handles = stored.map((o) => o.handle)
        yield* storage.complete(handles.slice(0, completed))
        for (const h of handles.slice(completed)) yield* storage.fail(h, { failcount: 1, runAfter: 0, dead: false })
        yield* storage.remove(handles.slice(completed))
      }),
      clockAt(now - (59 - k) * 60_000)
    )
  }
})

/** A stand-in for the Driver's console (src/driver/Console.ts): `status` answers a demo's lines. */
const driverConsole = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const lines = [
      "Email::send        2  8  5  2026-12-03T10:41:07  1970-01-01T00:00:00  ",
      "Image::resize      1  4  4  2026-12-03T10:41:09  2026-12-03T10:12:44  ERROR: convert: no decode delegate for image/heic",
      "Report::nightly    0  1  0  2026-12-03T02:00:03  1970-01-01T00:00:00  ",
      "Webhook::deliver   1  6  2  2026-12-03T10:41:05  2026-12-03T10:39:58  ERROR: POST https://hooks.example.com/o/42: 503"
    ]
    const server = Net.createServer((socket) => {
      socket.on("data", () => socket.end([...lines, "."].join("\r\n") + "\r\n"))
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => server.close())
)

const program = Effect.gen(function*() {
  if (!existsSync(CHROMIUM)) {
    return yield* Effect.dieMessage(`Chromium is not at ${CHROMIUM}: apt-get install -y chromium`)
  }
  mkdirSync(OUT, { recursive: true })
  yield* seedHour
  yield* Client.insertJobs(demoJobs())
  const storage = yield* Storage.Storage
  yield* storage.flow.setControl("report.nightly", { paused: true })
  const driver = yield* driverConsole
  const driverPort = (driver.address() as Net.AddressInfo).port
  const gearman = yield* Gearman.Gearman
  // A worker that never finishes: the job servers' table shows a worker and a running job.
  yield* Effect.forkScoped(gearman.serve({ "email.send": () => Effect.never }))
  yield* Effect.forkScoped(gearman.submitBackground("email.send", "{}"))
  const { url } = yield* serve({ host: "127.0.0.1", port: 0, driverConsole: { host: "127.0.0.1", port: driverPort } })
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
  yield* shoot("bulk-confirm", "/jobs?state=never", laptop, `button[data-bulk-action="retry"]`)
  yield* shoot("purge", "/function/purge-dead?function=image.resize", laptop)
  yield* shoot("driver", "/driver", laptop)
  yield* shoot("overview-phone", "/", phone)
  yield* shoot("jobs-phone", "/jobs?state=never", phone)
})

program.pipe(
  Effect.scoped,
  Effect.provide(Layer.merge(Storage.layerMemory({ shards: [1, 2] }), Gearman.layerMemory())),
  NodeRuntime.runMain
)
