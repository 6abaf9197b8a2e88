// The web console in a real Chromium (Debian's package, driven by playwright-core) over MariaDB
// and a gearmand: the overview refreshes while jobs come and go, a job is found by filter,
// opened and retried, and requests without the token or the CSRF token are refused. One browser
// for the file. Without Chromium the suite fails, saying how to install it.
import { existsSync } from "node:fs"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import { chromium } from "playwright-core"
import type { Browser, Page } from "playwright-core"
import * as Gearman from "../../src/gearman/Gearman.js"
import * as Client from "../../src/roles/Client.js"
import { Storage } from "../../src/storage/Storage.js"
import * as StorageLayers from "../../src/storage/Storage.js"
import { scopedGearmand } from "../../src/testing/gearmandProcess.js"
import { serve } from "../../src/web/WebConsole.js"
import type { ConsoleOptions } from "../../src/web/WebConsole.js"
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
      })))
})
