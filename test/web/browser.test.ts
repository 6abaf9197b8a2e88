// The web console in a real Chromium (Debian's package, driven by playwright-core) over MariaDB
// and a gearmand: the overview refreshes while jobs come and go, a job is found by filter,
// opened and retried, and requests without the token or the CSRF token are refused. One browser
// for the file. Without Chromium the suite fails, saying how to install it.
import { existsSync } from "node:fs"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Option, Redacted, Ref } from "effect"
import type { Scope } from "effect"
import { chromium } from "playwright-core"
import type { Browser, Page } from "playwright-core"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Client from "../../src/roles/Client.js"
import * as QueueRunner from "../../src/roles/QueueRunner.js"
import * as Worker from "../../src/roles/Worker.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { scopedGearmand } from "../../src/testing/gearmandProcess.js"
import { serve } from "../../src/web/WebConsole.js"
import type { ConsoleOptions } from "../../src/web/WebConsole.js"
import { fixture, startDriver } from "../driver/support.js"
import { eventually } from "../gearman/gearmand.js"
import { testShards } from "../support/mysql.js"

const CHROMIUM = process.env["GARIVINI_CHROMIUM"] ?? "/usr/bin/chromium"

let browser: Browser | undefined

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not at ${CHROMIUM}: install Debian's package (apt-get install -y chromium; .ci/run does), ` +
        `or point GARIVINI_CHROMIUM at a Chromium binary`
    )
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })
})

afterAll(async () => {
  await browser?.close()
})

/** A console over two fresh MariaDB shards and a real gearmand, and a fresh browser page. */
const withConsole = <A>(
  options: ConsoleOptions,
  body: (base: string, page: Page) => Effect.Effect<A, unknown, Storage | Gearman.Gearman | Scope.Scope>
) =>
  Effect.scoped(Effect.gen(function*() {
    const shards = yield* testShards(2)
    const server = yield* scopedGearmand
    const services = yield* Layer.build(
      Layer.merge(StorageLayers.layer({ shards }), Gearman.layer({ servers: [server] }))
    )
    return yield* Effect.gen(function*() {
      const running = yield* serve({ host: "127.0.0.1", port: 0, ...options })
      const context = yield* Effect.acquireRelease(
        Effect.promise(() => browser!.newContext({ viewport: { width: 1280, height: 800 } })),
        (c) => Effect.promise(() => c.close())
      )
      const page = yield* Effect.promise(() => context.newPage())
      return yield* body(running.url.replace(/\/$/, ""), page)
    }).pipe(Effect.provide(services))
  }))

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** Waits for a locator (a locator, not a page function: the CSP forbids eval). */
const shows = (page: Page, selector: string, hasText?: RegExp) =>
  promise(() => page.locator(selector, hasText === undefined ? {} : { hasText }).first().waitFor({ timeout: 20_000 }))

/** Runs jobs: a worker with `handlers` and a QueueRunner, in this scope. */
const runJobs = (handlers: Readonly<Record<string, Worker.JobHandler<never>>>) =>
  Effect.gen(function*() {
    yield* Worker.serve(handlers)
    yield* Effect.forkScoped(QueueRunner.run({ batchRunSleep: "100 millis" }))
  })

describe("web console in Chromium", () => {
  it.live("the overview's counts follow the jobs without a reload; the job server is up", () =>
    withConsole({}, (base, page) =>
      Effect.gen(function*() {
        yield* Client.insertJobs(Array.from({ length: 5 }, () => ({ funcname: "flow" })))
        yield* promise(() => page.goto(`${base}/`))
        const due = page.locator(`#functions tr[data-function="flow"] td[data-state="due"]`)
        assert.strictEqual((yield* promise(() => due.textContent()))?.trim(), "5")
        assert.strictEqual(yield* promise(() => page.locator("#servers td.up").count()), 1)
        // Jobs arrive: the count follows, with no navigation.
        // Waits on the cell's text (a locator, not a page function: the CSP forbids eval).
        const dueIs = (n: number) =>
          promise(() =>
            page.locator(`#functions tr[data-function="flow"] td[data-state="due"]`, {
              hasText: new RegExp(`^\\s*${n}\\s*$`)
            }).waitFor({ timeout: 15_000 })
          )
        // A mark in the page's globals: a reload would drop it.
        yield* promise(() => page.evaluate(() => void ((globalThis as Record<string, unknown>)["marker"] = 42)))
        yield* Client.insertJobs(Array.from({ length: 7 }, () => ({ funcname: "flow" })))
        yield* dueIs(12)
        // Jobs leave (done by a worker): the count follows again.
        const storage = yield* Storage
        const some = yield* storage.list({ funcname: "flow", limit: 10 })
        yield* storage.complete(some)
        yield* dueIs(2)
        assert.strictEqual(
          yield* promise(() => page.evaluate(() => (globalThis as Record<string, unknown>)["marker"])),
          42,
          "the page was not reloaded"
        )
      })))

  it.live("a job found by filter, opened, retried through the confirmation, leaves the list", () =>
    withConsole({}, (base, page) =>
      Effect.gen(function*() {
        yield* Client.insertJobs([
          ...Array.from(
            { length: 5 },
            (_, i) => ({ funcname: "orders", uniqkey: `order-${i}`, runAt: "never" as const })
          ),
          { funcname: "orders", uniqkey: "order-42", runAt: "never" as const, arg: "{\"order\":42}" }
        ])
        yield* promise(() => page.goto(`${base}/jobs`))
        yield* promise(() => page.fill(`input[name="uniqkey"]`, "order-42"))
        yield* promise(() => page.selectOption(`select[name="state"]`, "never"))
        yield* promise(() => page.click(`form.filters button[type="submit"]`))
        const rows = page.locator("#jobs tbody tr[data-handle]")
        assert.strictEqual(yield* promise(() => rows.count()), 1)
        const handle = (yield* promise(() => rows.first().getAttribute("data-handle")))!
        // Selecting shows the count on the buttons.
        yield* promise(() => page.check(`input[name="handle"][value="${handle}"]`))
        assert.include(yield* promise(() => page.locator(`button[data-action="retry"]`).textContent()), "(1)")

        yield* promise(() => page.click(`a[href="/job/${handle}"]`))
        assert.include(yield* promise(() => page.locator("#arg").textContent()), "\"order\": 42")
        assert.include(yield* promise(() => page.locator("dl.fields").textContent()), "Last error")
        yield* promise(() => page.click(`button[data-action="retry"]`))
        assert.include(yield* promise(() => page.locator("#confirm-text").textContent()), "Make 1 job(s) due now?")
        yield* promise(() => page.click(`#confirm button[type="submit"]`))
        assert.strictEqual(yield* promise(() => page.locator(`#results tr[data-outcome="Done"]`).count()), 1)

        yield* promise(() => page.goto(`${base}/jobs?state=never&uniqkey=order-`))
        const left = yield* promise(() =>
          page.locator("#jobs tbody tr[data-handle]").evaluateAll((trs) =>
            trs.map((tr) => tr.getAttribute("data-handle"))
          )
        )
        assert.strictEqual(left.length, 5)
        assert.notInclude(left, handle)
        yield* promise(() => page.goto(`${base}/jobs?state=due`))
        assert.strictEqual(yield* promise(() => page.locator(`tr[data-handle="${handle}"]`).count()), 1)
      })))

  it.live("pause a function from the overview: its jobs stay due; resume: they run; the chart counts them", () =>
    withConsole({}, (base, page) =>
      Effect.gen(function*() {
        const ran = yield* Ref.make(0)
        yield* runJobs({ pausable: () => Ref.update(ran, (n) => n + 1) })
        const storage = yield* Storage
        const stored = Effect.map(storage.list({ funcname: "pausable" }), (l) => l.length)
        yield* Client.insertJobs([{ funcname: "pausable" }])
        yield* eventually(Effect.map(stored, (n) => n === 0), "the first job to run")
        yield* Client.insertJobs([{ funcname: "pausable", runAt: "never" }]) // keeps its row on the overview
        yield* promise(() => page.goto(`${base}/`))
        const row = `#functions tr[data-function="pausable"]`
        assert.strictEqual(
          yield* promise(() => page.locator(`${row} td[data-paused]`).getAttribute("data-paused")),
          "no"
        )
        yield* promise(() => page.click(`${row} button[data-function-action="pause"]`))
        assert.include(yield* promise(() => page.locator("#function-result").textContent()), "pausable paused")
        yield* promise(() => page.click("#back"))
        yield* shows(page, `${row} td[data-paused="yes"]`)
        // A runner reads the controls once a second (Defaults.flow.controlsRefresh): a job stored in
        // that second may still be claimed by a runner that has not seen the pause yet.
        yield* Effect.sleep("1500 millis")
        // Paused: new jobs stay due, though a worker and a runner are up.
        yield* Client.insertJobs(Array.from({ length: 3 }, () => ({ funcname: "pausable" })))
        yield* shows(page, `${row} td[data-state="due"]`, /^\s*3\s*$/)
        yield* Effect.sleep("2 seconds") // twenty of the runner's rounds
        assert.strictEqual(yield* Ref.get(ran), 1)
        assert.strictEqual((yield* storage.list({ funcname: "pausable", state: "due" })).length, 3)
        // Resumed (the refreshed row's own button): they run, and the chart shows the completions.
        yield* promise(() => page.click(`${row} button[data-function-action="resume"]`))
        assert.include(yield* promise(() => page.locator("#function-result").textContent()), "pausable resumed")
        yield* eventually(Effect.map(Ref.get(ran), (n) => n === 4), "the resumed jobs to run")
        yield* promise(() => page.click("#back"))
        yield* shows(page, `${row} td[data-paused="no"]`)
        yield* shows(page, `svg#throughput-chart[data-completed="4"]`)
        assert.include(
          yield* promise(() => page.locator("#throughput-caption").textContent()),
          "4 completed"
        )
      })))

  it.live("every job matching a filter: the count shown before confirming, then done", () =>
    withConsole({}, (base, page) =>
      Effect.gen(function*() {
        yield* Client.insertJobs([
          ...Array.from({ length: 30 }, () => ({ funcname: "batch", runAt: "never" as const })),
          { funcname: "batch", runAt: "+3600" },
          { funcname: "other", runAt: "never" }
        ])
        yield* promise(() => page.goto(`${base}/jobs`))
        yield* promise(() => page.fill(`input[name="function"]`, "batch"))
        yield* promise(() => page.selectOption(`select[name="state"]`, "never"))
        yield* promise(() => page.click(`form.filters button[type="submit"]`))
        yield* promise(() => page.click(`button[data-bulk-action="cancel"]`))
        assert.include(yield* promise(() => page.locator("#bulk-count").textContent()), "30 jobs")
        assert.include(
          yield* promise(() => page.locator("#bulk-count").textContent()),
          "function = batch, state = never"
        )
        const storage = yield* Storage
        assert.deepStrictEqual(yield* storage.list({ state: "cancelled" }), [], "nothing before confirming")
        yield* promise(() => page.click(`#confirm button[type="submit"]`))
        assert.include(yield* promise(() => page.locator("#bulk-result").textContent()), "Done 30")
        const cancelled = yield* storage.list({ state: "cancelled" })
        assert.strictEqual(cancelled.length, 30)
        assert.isTrue(cancelled.every((j) => j.funcname === "batch"))
        assert.strictEqual((yield* storage.list({ state: "never" })).length, 1, "the other function's job is left")
      })))

  it.live("cancel a running job: refused without force, then cancelled; its end spares the row", () =>
    withConsole({}, (base, page) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const finished = yield* Deferred.make<void>()
        yield* runJobs({
          long: () =>
            Deferred.succeed(started, undefined).pipe(
              Effect.zipRight(Deferred.await(release)),
              Effect.zipRight(Deferred.succeed(finished, undefined)),
              Effect.asVoid
            )
        })
        const [outcome] = yield* Client.insertJobs([{ funcname: "long" }])
        const handle = `${outcome!.handle.dbid}:${outcome!.handle.jobid}`
        yield* Deferred.await(started)
        yield* promise(() => page.goto(`${base}/job/${handle}`))
        assert.include(yield* promise(() => page.locator("dl.fields").textContent()), "may be running")
        // Without force: refused, it may be running.
        yield* promise(() => page.click(`button[data-action="cancel"]`))
        yield* promise(() => page.click(`#confirm button[type="submit"]`))
        assert.strictEqual(yield* promise(() => page.locator(`#results tr[data-outcome="Refused"]`).count()), 1)
        yield* promise(() => page.goto(`${base}/job/${handle}`))
        yield* promise(() => page.click(`button[data-action="cancel"]`))
        yield* promise(() => page.check(`#confirm input[name="force"]`))
        yield* promise(() => page.click(`#confirm button[type="submit"]`))
        assert.strictEqual(yield* promise(() => page.locator(`#results tr[data-outcome="Done"]`).count()), 1)
        // The run ends; its completion does not delete the cancelled row.
        yield* Deferred.succeed(release, undefined)
        yield* Deferred.await(finished)
        yield* Effect.sleep("1 second") // the worker's completion batch
        yield* promise(() => page.goto(`${base}/job/${handle}`))
        assert.include(yield* promise(() => page.locator("dl.fields").textContent()), "cancelled")
        const storage = yield* Storage
        assert.strictEqual(Option.getOrThrow(yield* storage.get(outcome!.handle)).ended, "cancelled")
      })))

  it.live("the Driver page lists a real garivini driver's jobs; a min/max set there takes effect", () =>
    Effect.scoped(Effect.gen(function*() {
      const driver = yield* startDriver([fixture("Bare.mjs")], { interval: 0 })
      return yield* withConsole(
        { driverConsole: { host: "127.0.0.1", port: driver.consolePort } },
        (base, page) =>
          Effect.gen(function*() {
            yield* promise(() => page.goto(`${base}/`))
            yield* promise(() => page.click(`header a[href="/driver"]`))
            const row = `#driver-jobs tr[data-driver-job="bare_min"]`
            yield* shows(page, `${row} td[data-field="min"]`, /^1$/)
            assert.strictEqual(yield* promise(() => page.locator("#driver-jobs tr[data-driver-job]").count()), 2)
            yield* promise(() => page.fill(`${row} input[name="min"]`, "2"))
            yield* promise(() => page.fill(`${row} input[name="max"]`, "2"))
            yield* promise(() => page.click(`${row} button[type="submit"]`))
            assert.include(yield* promise(() => page.locator("#driver-notice").textContent()), "min 2, max 2")
            assert.strictEqual(yield* promise(() => page.locator(`${row} td[data-field="max"]`).textContent()), "2")
            // The Driver acts on it: a second process of the job.
            yield* eventually(Effect.map(driver.processes("bare_min"), (n) => n === 2), "two bare_min processes")
            // A value beyond the job's own limits is the Driver's to refuse; the page says so.
            yield* promise(() => page.fill(`${row} input[name="min"]`, "3"))
            yield* promise(() => page.fill(`${row} input[name="max"]`, "1"))
            yield* promise(() => page.click(`${row} button[type="submit"]`))
            assert.include(yield* promise(() => page.locator("#driver-notice").textContent()), "refused")
            yield* promise(() => page.goto(`${base}/driver`))
            assert.strictEqual(
              yield* promise(() => page.locator(`${row} td[data-field="processes"]`).textContent()),
              "2"
            )
          })
      )
    })))

  it.live("with a token: a request without it is refused; the login link lets the browser in", () =>
    withConsole({ token: Option.some(Redacted.make("tok-123")) }, (base, page) =>
      Effect.gen(function*() {
        const refused = yield* promise(() => page.goto(`${base}/jobs`))
        assert.strictEqual(refused?.status(), 401)
        const wrong = yield* promise(() => page.goto(`${base}/jobs?token=nope`))
        assert.strictEqual(wrong?.status(), 401)
        const login = yield* promise(() => page.goto(`${base}/jobs?token=tok-123`))
        assert.strictEqual(login?.status(), 200)
        assert.strictEqual(new URL(page.url()).search, "", "the token leaves the address bar")
        const again = yield* promise(() => page.goto(`${base}/`))
        assert.strictEqual(again?.status(), 200)
      })))

  it.live("a POST without the CSRF token is refused, and changes nothing", () =>
    withConsole({}, (base, page) =>
      Effect.gen(function*() {
        const [outcome] = yield* Client.insertJobs([{ funcname: "victim", runAt: "never" }])
        const handle = `${outcome!.handle.dbid}:${outcome!.handle.jobid}`
        yield* promise(() => page.goto(`${base}/jobs`))
        const status = yield* promise(() =>
          page.evaluate(async (h) => {
            const r = await fetch("/action/delete", {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded" },
              body: `handle=${encodeURIComponent(h)}&step=run`
            })
            return r.status
          }, handle)
        )
        assert.strictEqual(status, 403)
        const storage = yield* Storage
        assert.isTrue(Option.isSome(yield* storage.get(outcome!.handle)))
        // Nor may a function be paused without it.
        const pause = yield* promise(() =>
          page.evaluate(async () => {
            const r = await fetch("/function/pause", {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded" },
              body: "function=victim&step=run"
            })
            return r.status
          })
        )
        assert.strictEqual(pause, 403)
        assert.deepStrictEqual(yield* storage.flow.controls(1), [])
      })))
})
