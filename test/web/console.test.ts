// The web console over HTTP, with the memory storage and job server: pages, filters, keyset
// paging, actions through their confirmation, CSRF, the token, read-only mode, and escaping of
// hostile function names, keys and args.
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, HashMap, Layer, Logger, Option, Redacted } from "effect"
import * as Gearman from "../../src/gearman/Gearman.js"
import { NEVER } from "../../src/Job.js"
import * as Client from "../../src/roles/Client.js"
import type { JobSpec } from "../../src/roles/Client.js"
import * as Storage from "../../src/storage/Storage.js"
import { serve } from "../../src/web/WebConsole.js"
import type { ConsoleOptions } from "../../src/web/WebConsole.js"

const now = () => Math.floor(Date.now() / 1000)

/** A console on a free port over fresh memory services (shards 1 and 2), with `jobs` stored. */
const withConsole = <A>(
  options: ConsoleOptions,
  jobs: ReadonlyArray<JobSpec>,
  body: (base: string, storage: Storage.StorageShape) => Effect.Effect<A, unknown>
) =>
  Effect.scoped(Effect.gen(function*() {
    const storage = yield* Storage.Storage
    if (jobs.length > 0) yield* Client.insertJobs(jobs)
    const running = yield* serve({ host: "127.0.0.1", port: 0, ...options })
    return yield* body(running.url.replace(/\/$/, ""), storage)
  })).pipe(
    Effect.provide(Layer.merge(Storage.layerMemory({ shards: [1, 2] }), Gearman.layerMemory()))
  )

const get = (url: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const r = await fetch(url, { redirect: "manual", ...init })
    return { status: r.status, headers: r.headers, text: await r.text() }
  })

const post = (url: string, form: ReadonlyArray<readonly [string, string]>, init: RequestInit = {}) =>
  get(url, {
    method: "POST",
    body: new URLSearchParams(form.map(([k, v]): [string, string] => [k, v])).toString(),
    ...init,
    headers: { "content-type": "application/x-www-form-urlencoded", ...(init.headers ?? {}) }
  })

const csrfOf = (page: string) => /name="csrf" value="([^"]+)"/.exec(page)![1]!
const handlesOf = (page: string) => [...page.matchAll(/<tr data-handle="([^"]+)"/g)].map((m) => m[1]!)

const HOSTILE_NAME = "<script>alert(1)</script>"
const HOSTILE_ARG = "\"><img src=x onerror=alert(2)>"
const HOSTILE_KEY = "k'\"><script>alert(3)</script>"

describe("web console", () => {
  it.live("the overview shows counts per function and state, per shard on demand, and the job servers", () =>
    withConsole({}, [
      { funcname: "mail", runAt: "+3600" },
      { funcname: "mail" },
      { funcname: "mail", uniqkey: "a" },
      { funcname: "resize", runAt: "never" }
    ], (base) =>
      Effect.gen(function*() {
        const page = yield* get(`${base}/`)
        assert.strictEqual(page.status, 200)
        assert.include(page.text, `<tr data-function="mail">`)
        assert.match(page.text, /data-state="due"><a href="\/jobs\?function=mail&amp;state=due">2<\/a>/)
        assert.match(page.text, /data-state="never"><a [^>]+>1<\/a>/)
        assert.include(page.text, "<td>memory</td><td class=\"up\"")
        // Security headers on every answer.
        assert.include(page.headers.get("content-security-policy") ?? "", "script-src 'self'")
        const json = JSON.parse((yield* get(`${base}/api/overview`)).text)
        const mail = json.functions.find((f: { funcname: string }) => f.funcname === "mail")
        assert.deepStrictEqual(mail.counts, {
          due: 2,
          scheduled: 1,
          retrying: 0,
          dispatched: 0,
          running: 0,
          never: 0,
          dead: 0,
          cancelled: 0
        })
        assert.isAtLeast(mail.oldestDueAge, 0)
        assert.deepStrictEqual(json.columns.map((c: { name: string }) => c.name), [
          "due",
          "scheduled",
          "retrying",
          "dispatched",
          "running",
          "never",
          "dead",
          "cancelled"
        ])
        assert.deepStrictEqual(json.servers.map((s: { server: string; up: boolean }) => [s.server, s.up]), [[
          "memory",
          true
        ]])
        const perShard = JSON.parse((yield* get(`${base}/api/overview?shards=1`)).text)
        assert.isTrue(perShard.perShard)
        assert.isTrue(perShard.functions.every((f: { shard: number | null }) => f.shard === 1 || f.shard === 2))
        const sum = perShard.functions.filter((f: { funcname: string }) => f.funcname === "mail")
          .reduce((n: number, f: { counts: { due: number } }) => n + f.counts.due, 0)
        assert.strictEqual(sum, 2)
        assert.strictEqual((yield* get(`${base}/assets/console.css`)).status, 200)
        assert.include((yield* get(`${base}/assets/console.js`)).headers.get("content-type") ?? "", "javascript")
      })))

  it.live("jobs: filters by function, state, shard and unique-key text; keyset pages by id and by run_after", () =>
    withConsole(
      {},
      [
        ...Array.from({ length: 7 }, (_, i): JobSpec => ({ funcname: "a", uniqkey: `order-${i}`, runAt: now() - i })),
        { funcname: "a", uniqkey: "invoice-1", runAt: "never" },
        { funcname: "b", uniqkey: "order-x", runAt: "+600" }
      ],
      (base) =>
        Effect.gen(function*() {
          const all = handlesOf((yield* get(`${base}/jobs`)).text)
          assert.strictEqual(all.length, 9)
          assert.strictEqual(handlesOf((yield* get(`${base}/jobs?function=b`)).text).length, 1)
          assert.strictEqual(handlesOf((yield* get(`${base}/jobs?state=never`)).text).length, 1)
          assert.strictEqual(handlesOf((yield* get(`${base}/jobs?uniqkey=order-`)).text).length, 8)
          assert.strictEqual(handlesOf((yield* get(`${base}/jobs?function=a&uniqkey=invoice`)).text).length, 1)
          const shard2 = handlesOf((yield* get(`${base}/jobs?shard=2`)).text)
          assert.isTrue(shard2.every((h) => h.startsWith("2:")))
          // Blank fields mean "any".
          assert.strictEqual(handlesOf((yield* get(`${base}/jobs?function=&state=&shard=&uniqkey=`)).text).length, 9)

          // Following "Next page" visits every job once, in order.
          const walk = (first: string) =>
            Effect.gen(function*() {
              const seen: Array<string> = []
              let url: string | undefined = first
              while (url !== undefined) {
                const text: string = (yield* get(url)).text
                seen.push(...handlesOf(text))
                const next: RegExpExecArray | null = /<a href="([^"]+)" id="next-page">/.exec(text)
                url = next === null ? undefined : `${base}${next[1]!.replace(/&amp;/g, "&")}`
              }
              return seen
            })
          const byId = yield* walk(`${base}/jobs?limit=2`)
          assert.deepStrictEqual(byId, all)
          const byRunAfter = yield* walk(`${base}/jobs?limit=2&order=runAfter&function=a`)
          assert.strictEqual(byRunAfter.length, 8)
          assert.strictEqual(new Set(byRunAfter).size, 8)
          // The never job last: run_after order.
          const never = handlesOf((yield* get(`${base}/jobs?state=never`)).text)[0]
          assert.strictEqual(byRunAfter[7], never)

          assert.strictEqual((yield* get(`${base}/jobs?state=bogus`)).status, 400)
          assert.strictEqual((yield* get(`${base}/jobs?order=runAfter&after=1:1`)).status, 400)
          assert.strictEqual((yield* get(`${base}/jobs?limit=100000`)).status, 400)
        })
    ))

  it.live("the job page shows the row and the arg decoded: JSON pretty, text, hex for binary, bounded", () =>
    withConsole({}, [
      { funcname: "j", arg: "{\"user\":42,\"tags\":[\"a\"]}" },
      { funcname: "t", arg: "plain text" },
      { funcname: "bin", arg: Uint8Array.from([0, 1, 2, 255, 254]) },
      { funcname: "big", arg: "x".repeat(100_000) }
    ], (base) =>
      Effect.gen(function*() {
        const handles = handlesOf((yield* get(`${base}/jobs`)).text)
        const pages = yield* Effect.forEach(handles, (h) => get(`${base}/job/${h}`))
        const byFunc = (name: string) => pages.find((p) => p.text.includes(`<dd>${name}</dd>`))!.text
        assert.include(byFunc("j"), "{\n  &quot;user&quot;: 42,")
        assert.include(byFunc("j"), "json")
        assert.include(byFunc("t"), `<pre id="arg">plain text</pre>`)
        assert.include(byFunc("bin"), "00 01 02 ff fe")
        assert.include(byFunc("big"), "first part shown")
        assert.isBelow(byFunc("big").length, 20_000)
        assert.include(byFunc("j"), "Last error")
        assert.strictEqual((yield* get(`${base}/job/nope`)).status, 400)
        assert.strictEqual((yield* get(`${base}/job/1:999`)).status, 404)
        assert.strictEqual((yield* get(`${base}/nowhere`)).status, 404)
      })))

  it.live("actions: a count to confirm, then done; refused without the CSRF token; leased jobs need force", () =>
    withConsole({}, [
      { funcname: "p", runAt: "never" },
      { funcname: "p", runAt: "never" },
      { funcname: "p", runAt: "+20" } // within a lease (30 s) of now: may be running
    ], (base, storage) =>
      Effect.gen(function*() {
        const list = (yield* get(`${base}/jobs?state=never`)).text
        const csrf = csrfOf(list)
        const [a, b] = handlesOf(list)
        const form = [["handle", a!], ["handle", b!], ["back", "/jobs?state=never"]] as const

        // No token, or a wrong one: refused, nothing changed.
        assert.strictEqual((yield* post(`${base}/action/retry`, [...form, ["step", "run"]])).status, 403)
        assert.strictEqual(
          (yield* post(`${base}/action/retry`, [...form, ["step", "run"], ["csrf", "forged"]])).status,
          403
        )
        assert.strictEqual(handlesOf((yield* get(`${base}/jobs?state=never`)).text).length, 2)

        // The confirmation shows the count and changes nothing.
        const confirm = yield* post(`${base}/action/retry`, [...form, ["csrf", csrf], ["step", "confirm"]])
        assert.strictEqual(confirm.status, 200)
        assert.include(confirm.text, "Make 2 job(s) due now?")
        assert.strictEqual(handlesOf((yield* get(`${base}/jobs?state=never`)).text).length, 2)
        const done = yield* post(`${base}/action/retry`, [...form, ["csrf", csrf], ["step", "run"]])
        assert.include(done.text, "2 of 2 done")
        assert.deepStrictEqual(handlesOf((yield* get(`${base}/jobs?state=never`)).text), [])

        // A job that may be running: refused, then done with force.
        const leased = handlesOf((yield* get(`${base}/jobs?state=scheduled`)).text)[0]!
        const refused = yield* post(`${base}/action/delete`, [["handle", leased], ["csrf", csrf], ["step", "run"]])
        assert.include(refused.text, `data-outcome="Refused"`)
        const forced = yield* post(`${base}/action/delete`, [
          ["handle", leased],
          ["csrf", csrf],
          ["step", "run"],
          ["force", "on"]
        ])
        assert.include(forced.text, `data-outcome="Done"`)
        const [dbid, jobid] = leased.split(":").map(Number)
        assert.isTrue(Option.isNone(yield* storage.get({ dbid: dbid!, jobid: jobid! })))
        // An unknown action, a return address elsewhere.
        assert.strictEqual((yield* post(`${base}/action/explode`, [["handle", a!], ["csrf", csrf]])).status, 404)
        const offsite = yield* post(`${base}/action/retry`, [["handle", a!], ["csrf", csrf], [
          "back",
          "//evil.example/"
        ]])
        assert.notInclude(offsite.text, "evil.example")
      })))

  it.live("cancel: offered per job and for a selection, confirmed, done; CSRF, may-be-running and read-only refused", () =>
    withConsole({}, [
      { funcname: "c", runAt: "never" },
      { funcname: "c", runAt: "+3600" },
      { funcname: "c", runAt: "+20" } // within a lease (30 s) of now: may be running
    ], (base, storage) =>
      Effect.gen(function*() {
        const list = (yield* get(`${base}/jobs?function=c`)).text
        const csrf = csrfOf(list)
        assert.include(list, `data-action="cancel"`)
        // By run_after (the shards' order in the list may differ): +60, +3600, never.
        const [leased, b, a] = (yield* storage.list({ funcname: "c" }))
          .slice()
          .sort((x, y) => x.runAfter - y.runAfter)
          .map((j) => `${j.dbid}:${j.jobid}`)
        assert.sameMembers(handlesOf(list), [a!, b!, leased!])
        assert.include((yield* get(`${base}/job/${a}`)).text, `data-action="cancel"`)
        const form = [["handle", a!], ["handle", b!]] as const
        assert.strictEqual(
          (yield* post(`${base}/action/cancel`, [...form, ["step", "run"], ["csrf", "x"]])).status,
          403
        )
        const confirm = yield* post(`${base}/action/cancel`, [...form, ["csrf", csrf], ["step", "confirm"]])
        assert.include(confirm.text, "Cancel 2 job(s)?")
        assert.deepStrictEqual(yield* storage.list({ state: "cancelled" }), [])
        const done = yield* post(`${base}/action/cancel`, [...form, ["csrf", csrf], ["step", "run"]])
        assert.include(done.text, "2 of 2 done")
        assert.deepStrictEqual(
          (yield* storage.list({ state: "cancelled" })).map((j) => `${j.dbid}:${j.jobid}`).sort(),
          [a!, b!].sort()
        )
        // Again: nothing to do. A job that may be running: refused (it could still run once).
        const again = yield* post(`${base}/action/cancel`, [["handle", a!], ["csrf", csrf], ["step", "run"]])
        assert.include(again.text, `data-outcome="Unchanged"`)
        const refused = yield* post(`${base}/action/cancel`, [["handle", leased!], ["csrf", csrf], ["step", "run"]])
        assert.include(refused.text, `data-outcome="Refused"`)
        assert.include(refused.text, "may still run once")
        const [dbid, jobid] = leased!.split(":").map(Number)
        assert.isNull(Option.getOrThrow(yield* storage.get({ dbid: dbid!, jobid: jobid! })).ended)
      })))

  it.live("functions: pause and resume from the overview, shown there; purge dead jobs older than N, confirmed first", () =>
    withConsole(
      {},
      [{ funcname: "f" }, { funcname: "f" }, { funcname: "g" }],
      (base, storage) =>
        Effect.gen(function*() {
          const overview = (yield* get(`${base}/`)).text
          const csrf = csrfOf(overview)
          assert.match(overview, /<tr data-function="f">[\s\S]*?data-paused="no"/)
          assert.include(overview, `data-function-action="pause"`)
          // Without the CSRF token: refused, nothing paused.
          assert.strictEqual((yield* post(`${base}/function/pause`, [["function", "f"], ["step", "run"]])).status, 403)
          assert.deepStrictEqual(yield* storage.flow.controls(1), [])
          const paused = yield* post(`${base}/function/pause`, [["function", "f"], ["csrf", csrf], ["step", "run"]])
          assert.strictEqual(paused.status, 200)
          assert.include(paused.text, "f paused (every shard)")
          for (const dbid of [1, 2]) {
            assert.deepStrictEqual((yield* storage.flow.controls(dbid)).map((c) => [c.funcname, c.paused]), [[
              "f",
              true
            ]])
          }
          const after = (yield* get(`${base}/`)).text
          assert.match(after, /<tr data-function="f">[\s\S]*?data-paused="yes"/)
          assert.match(after, /<tr data-function="g">[\s\S]*?data-paused="no"/)
          assert.include(after, `data-function-action="resume"`)
          const json = JSON.parse((yield* get(`${base}/api/overview`)).text)
          assert.deepStrictEqual(
            json.functions.map((f: { funcname: string; paused: boolean }) => [f.funcname, f.paused]),
            [["f", true], ["g", false]]
          )
          // A paused function without stored jobs keeps its row, to be resumed from.
          yield* storage.flow.setControl("idle", { paused: true })
          assert.include((yield* get(`${base}/`)).text, `<tr data-function="idle">`)
          yield* post(`${base}/function/resume`, [["function", "f"], ["csrf", csrf], ["step", "run"]])
          assert.deepStrictEqual((yield* storage.flow.controls(1)).map((c) => c.funcname), ["idle"])

          // Purge: two dead jobs of g/f; the form, then a confirmation that changes nothing, then done.
          const [one, two] = yield* storage.list({ funcname: "f" })
          const [other] = yield* storage.list({ funcname: "g" })
          for (const j of [one!, two!, other!]) yield* storage.fail(j, { failcount: 3, runAfter: NEVER, dead: true })
          yield* Effect.sleep("1100 millis") // ended_at strictly before now - 0 s
          const form = yield* get(`${base}/function/purge-dead?function=f`)
          assert.include(form.text, "f has 2 dead job(s)")
          assert.strictEqual(
            (yield* post(`${base}/function/purge-dead`, [["function", "f"], ["olderThan", "soon"], ["csrf", csrf]]))
              .status,
            400
          )
          const confirm = yield* post(`${base}/function/purge-dead`, [["function", "f"], ["olderThan", "0"], [
            "csrf",
            csrf
          ], ["step", "confirm"]])
          assert.include(confirm.text, "Delete every dead job of f that died more than 0s ago")
          assert.strictEqual((yield* storage.list({ state: "dead" })).length, 3)
          const done = yield* post(`${base}/function/purge-dead`, [["function", "f"], ["olderThan", "0"], [
            "csrf",
            csrf
          ], ["step", "run"]])
          assert.include(done.text, "deleted 2 dead job(s) of f older than 0s")
          assert.deepStrictEqual((yield* storage.list({ state: "dead" })).map((j) => j.funcname), ["g"])
          // Older than a day: none of g's goes.
          yield* post(`${base}/function/purge-dead`, [["function", "g"], ["olderThan", "1d"], ["csrf", csrf], [
            "step",
            "run"
          ]])
          assert.strictEqual((yield* storage.list({ state: "dead" })).length, 1)
          assert.strictEqual((yield* post(`${base}/function/explode`, [["function", "f"], ["csrf", csrf]])).status, 404)
          // A name storage refuses: a bad request, not an outage.
          assert.strictEqual(
            (yield* post(`${base}/function/pause`, [["function", "bad name"], ["csrf", csrf], ["step", "run"]])).status,
            400
          )
        })
    ))

  it.live("read-only: no function control offered, and pause refused", () =>
    withConsole({ readOnly: true }, [{ funcname: "r" }], (base, storage) =>
      Effect.gen(function*() {
        const overview = (yield* get(`${base}/`)).text
        assert.notInclude(overview, "data-function-action")
        assert.notInclude(overview, "data-csrf")
        const list = (yield* get(`${base}/jobs`)).text
        const refused = yield* post(`${base}/function/pause`, [["function", "r"], ["csrf", csrfOf(list)], [
          "step",
          "run"
        ]])
        assert.strictEqual(refused.status, 403)
        assert.deepStrictEqual(yield* storage.flow.controls(1), [])
        assert.strictEqual((yield* get(`${base}/function/purge-dead?function=r`)).status, 403)
      })))

  it.live("an action on the filtered set: the count shown before confirming, capped, run through the job actions' rules", () =>
    withConsole(
      { bulkMax: 3 },
      [
        ...Array.from({ length: 5 }, (): JobSpec => ({ funcname: "bulk", runAt: "never", uniqkey: undefined })),
        { funcname: "bulk", runAt: "+20" }, // within a lease (30 s) of now: may be running
        { funcname: "other", runAt: "never" }
      ],
      (base, storage) =>
        Effect.gen(function*() {
          const list = (yield* get(`${base}/jobs?function=bulk&state=never`)).text
          const csrf = csrfOf(list)
          assert.include(list, `data-bulk-action="retry"`)
          assert.include(list, "Every job matching function = bulk, state = never (up to 3)")
          const filter = [["scope", "filter"], ["function", "bulk"], ["state", "never"], ["shard", ""], [
            "csrf",
            csrf
          ]] as const
          // Without the CSRF token: refused.
          assert.strictEqual(
            (yield* post(`${base}/action/retry`, [["scope", "filter"], ["function", "bulk"], ["step", "run"]])).status,
            403
          )
          // The confirmation counts (capped at 3 here), and changes nothing.
          const confirm = yield* post(`${base}/action/retry`, [...filter, ["step", "confirm"]])
          assert.include(confirm.text, "More than 3 jobs</strong> match function = bulk, state = never")
          assert.include(confirm.text, `id="bulk-capped"`)
          assert.strictEqual((yield* storage.list({ state: "never" })).length, 6)
          const done = yield* post(`${base}/action/retry`, [...filter, ["step", "run"]])
          assert.include(done.text, "Retry: 3 of 3 done")
          assert.strictEqual((yield* storage.list({ funcname: "bulk", state: "never" })).length, 2)
          // The rest, counted exactly now; the other function untouched.
          const rest = yield* post(`${base}/action/retry`, [...filter, ["step", "confirm"]])
          assert.include(rest.text, "<strong>2 jobs</strong> match")
          assert.notInclude(rest.text, "bulk-capped")
          yield* post(`${base}/action/retry`, [...filter, ["step", "run"]])
          assert.deepStrictEqual((yield* storage.list({ state: "never" })).map((j) => j.funcname), ["other"])

          // The same rules as one job: the one that may be running is refused, unless forced.
          const scheduled = [["scope", "filter"], ["function", "bulk"], ["state", "scheduled"], ["csrf", csrf]] as const
          assert.include((yield* post(`${base}/action/delete`, [...scheduled, ["step", "confirm"]])).text, "1 jobs")
          const refused = yield* post(`${base}/action/delete`, [...scheduled, ["step", "run"]])
          assert.include(refused.text, `data-outcome="Refused"`)
          assert.strictEqual((yield* storage.list({ funcname: "bulk", state: "scheduled" })).length, 1)
          const forced = yield* post(`${base}/action/delete`, [...scheduled, ["step", "run"], ["force", "on"]])
          assert.include(forced.text, "Delete: 1 of 1 done")
          assert.deepStrictEqual(yield* storage.list({ funcname: "bulk", state: "scheduled" }), [])
          // Cancel on a unique-key text filter that matches nothing: zero, nothing touched.
          const none = yield* post(`${base}/action/cancel`, [["scope", "filter"], ["uniqkey", "nope"], ["csrf", csrf], [
            "step",
            "confirm"
          ]])
          assert.include(none.text, "<strong>0 jobs</strong> match unique key contains &quot;nope&quot;")
          assert.strictEqual(
            (yield* post(`${base}/action/cancel`, [["scope", "filter"], ["state", "bogus"], ["csrf", csrf]])).status,
            400
          )
        })
    ))

  it.live("the overview's chart: completed and failed per minute over the last hour, as inline SVG, also alone for refreshes", () =>
    withConsole(
      {},
      [{ funcname: "c" }, { funcname: "c" }, { funcname: "c" }],
      (base, storage) =>
        Effect.gen(function*() {
          const before = (yield* get(`${base}/`)).text
          assert.include(before, `id="throughput-chart"`)
          assert.include(before, `data-completed="0" data-failed="0"`)
          const [a, b, c] = yield* storage.list({ funcname: "c" })
          yield* storage.complete([a!, b!])
          yield* storage.fail(c!, { failcount: 1, runAfter: now() + 600, dead: false, error: "boom" })
          const page = (yield* get(`${base}/`)).text
          assert.match(page, /<svg [^>]*id="throughput-chart"[^>]*data-completed="2" data-failed="1"/)
          assert.include(page, "2 completed · 1 failed in the last hour")
          assert.strictEqual((page.match(/<g data-minute=/g) ?? []).length, 60)
          const svg = yield* get(`${base}/api/throughput.svg`)
          assert.strictEqual(svg.status, 200)
          assert.include(svg.headers.get("content-type") ?? "", "image/svg+xml")
          assert.match(svg.text, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
          assert.include(svg.text, `data-caption="2 completed · 1 failed in the last hour"`)
          assert.include(svg.text, `class="bar-completed"`)
          assert.include(svg.text, `class="bar-failed"`)
          const json = JSON.parse((yield* get(`${base}/api/overview`)).text)
          const last = json.throughput.minutes[json.throughput.minutes.length - 1]
          assert.deepInclude(last, { completed: 2, failed: 1 })
        })
    ))

  it.live("the Driver page: its jobs from the Driver's console, min/max set with the CSRF token, refusals shown", () => {
    // A stand-in for the Driver's console speaking its protocol (the browser test runs a real Driver).
    const jobs = new Map([["Mail::send", { min: 1, max: 4 }]])
    const sent: Array<string> = []
    const fake = Effect.acquireRelease(
      Effect.async<Net.Server>((resume) => {
        const server = Net.createServer((socket) => {
          socket.setEncoding("utf8")
          socket.on("data", (line: string) => {
            const words = line.trim().split(/\s+/)
            sent.push(line.trim())
            if (words[0] === "status") {
              const rows = [...jobs].map(([name, j]) =>
                `${name}  ${j.min}  ${j.max}  1  2026-12-03T10:00:00  1970-01-01T00:00:00  `
              )
              socket.end(
                [...rows, "Other::job  0  1  0  1970-01-01T00:00:00  2026-12-03T10:01:00  ERROR: <b>boom</b>", "."]
                  .join("\r\n") + "\r\n"
              )
            } else if (words[0] === "set_processes") {
              const [, name, min, max] = words
              if (Number(max) > 50) return socket.end("ERR invalid_value: max_processes must be <= 50\r\n.\r\n")
              jobs.set(name!, { min: Number(min), max: Number(max) })
              socket.end("OK\r\n.\r\n")
            }
          })
        })
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) => Effect.sync(() => server.close())
    )
    return Effect.scoped(Effect.gen(function*() {
      const server = yield* fake
      const port = (server.address() as Net.AddressInfo).port
      return yield* withConsole({ driverConsole: { host: "127.0.0.1", port } }, [], (base) =>
        Effect.gen(function*() {
          const page = (yield* get(`${base}/driver`)).text
          assert.include(page, `<a href="/driver"`)
          assert.match(page, /data-driver-job="Mail::send"[\s\S]*?data-field="min">1<[\s\S]*?data-field="max">4</)
          assert.include(page, "&lt;b&gt;boom&lt;/b&gt;")
          const csrf = csrfOf(page)
          assert.strictEqual(
            (yield* post(`${base}/driver/processes`, [["job", "Mail::send"], ["min", "2"], ["max", "6"]])).status,
            403
          )
          const set = yield* post(`${base}/driver/processes`, [["job", "Mail::send"], ["min", "2"], ["max", "6"], [
            "csrf",
            csrf
          ]])
          assert.strictEqual(set.status, 200)
          assert.include(set.text, "Mail::send: min 2, max 6 processes")
          assert.deepStrictEqual(jobs.get("Mail::send"), { min: 2, max: 6 })
          assert.include(sent, "set_processes Mail::send 2 6")
          const refused = yield* post(`${base}/driver/processes`, [["job", "Mail::send"], ["min", "1"], ["max", "99"], [
            "csrf",
            csrf
          ]])
          assert.strictEqual(refused.status, 400)
          assert.include(refused.text, "max_processes must be &lt;= 50")
          // A second command cannot ride in the job's name; numbers only.
          const injected = yield* post(`${base}/driver/processes`, [["job", "a\nshutdown"], ["min", "1"], [
            "max",
            "2"
          ], ["csrf", csrf]])
          assert.strictEqual(injected.status, 400)
          assert.strictEqual(
            (yield* post(`${base}/driver/processes`, [["job", "Mail::send"], ["min", "-1"], ["max", "2"], [
              "csrf",
              csrf
            ]])).status,
            400
          )
          assert.notInclude(sent.join("\n"), "shutdown")
        }))
    }))
  })

  it.live("no Driver console given: no Driver page", () =>
    withConsole({}, [], (base) =>
      Effect.gen(function*() {
        assert.notInclude((yield* get(`${base}/`)).text, `href="/driver"`)
        assert.strictEqual((yield* get(`${base}/driver`)).status, 404)
      })))

  it.live("read-only: cancel refused", () =>
    withConsole({ readOnly: true }, [{ funcname: "r", runAt: "never" }], (base, storage) =>
      Effect.gen(function*() {
        const list = (yield* get(`${base}/jobs`)).text
        const refused = yield* post(`${base}/action/cancel`, [["handle", handlesOf(list)[0]!], ["csrf", csrfOf(list)], [
          "step",
          "run"
        ]])
        assert.strictEqual(refused.status, 403)
        assert.deepStrictEqual(yield* storage.list({ state: "cancelled" }), [])
      })))

  it.live("an action is logged with the action, the handles and the client's address", () => {
    const lines: Array<{ message: unknown; annotations: Record<string, unknown> }> = []
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, message }) =>
        void lines.push({ message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
      )
    )
    return withConsole({}, [{ funcname: "logged", runAt: "never" }], (base) =>
      Effect.gen(function*() {
        const list = (yield* get(`${base}/jobs`)).text
        const handle = handlesOf(list)[0]!
        yield* post(`${base}/action/retry`, [["handle", handle], ["csrf", csrfOf(list)], ["step", "run"]])
        const line = lines.find((l) => String(l.message).includes("web action"))
        assert.isDefined(line)
        assert.deepInclude(line!.annotations, { action: "retry", handles: handle, done: 1, force: false })
        assert.match(String(line!.annotations["remote"]), /127\.0\.0\.1/)
      })).pipe(Effect.provide(capture))
  })

  it.live("read-only: no action offered, and every action refused", () =>
    withConsole({ readOnly: true }, [{ funcname: "r", runAt: "never" }], (base, storage) =>
      Effect.gen(function*() {
        const list = (yield* get(`${base}/jobs`)).text
        assert.notInclude(list, "data-action=")
        assert.notInclude(list, `name="handle"`)
        const handle = handlesOf(list)[0]!
        assert.notInclude((yield* get(`${base}/job/${handle}`)).text, "data-action=")
        const refused = yield* post(`${base}/action/retry`, [["handle", handle], ["csrf", csrfOf(list)], [
          "step",
          "run"
        ]])
        assert.strictEqual(refused.status, 403)
        assert.include(refused.text, "read-only")
        const jobs = yield* storage.list({})
        assert.strictEqual(jobs[0]!.runAfter, NEVER)
      })))

  it.live("a token: required on every request, as a bearer header or the cookie a login link sets", () =>
    withConsole({ token: Option.some(Redacted.make("s3cret")) }, [], (base) =>
      Effect.gen(function*() {
        for (const path of ["/", "/jobs", "/api/overview", "/assets/console.js", "/nowhere"]) {
          assert.strictEqual((yield* get(`${base}${path}`)).status, 401, path)
        }
        assert.strictEqual((yield* get(`${base}/`, { headers: { authorization: "Bearer wrong" } })).status, 401)
        assert.strictEqual((yield* get(`${base}/`, { headers: { authorization: "Bearer s3cret" } })).status, 200)
        assert.strictEqual((yield* get(`${base}/jobs?token=wrong`)).status, 401)
        const login = yield* get(`${base}/jobs?state=due&token=s3cret`)
        assert.strictEqual(login.status, 303)
        assert.strictEqual(login.headers.get("location"), "/jobs?state=due")
        const cookie = login.headers.get("set-cookie") ?? ""
        assert.include(cookie, "HttpOnly")
        assert.include(cookie, "SameSite=Strict")
        const pair = cookie.split(";")[0]!
        assert.strictEqual((yield* get(`${base}/jobs`, { headers: { cookie: pair } })).status, 200)
        assert.strictEqual((yield* get(`${base}/jobs`, { headers: { cookie: "garivini_web_token=nope" } })).status, 401)
      })))

  it.live("hostile function names, keys and args are escaped on every page", () =>
    withConsole(
      {},
      [{ funcname: HOSTILE_NAME, uniqkey: HOSTILE_KEY, arg: HOSTILE_ARG }],
      (base) =>
        Effect.gen(function*() {
          const list = (yield* get(`${base}/jobs`)).text
          const handle = handlesOf(list)[0]!
          const pages = [
            (yield* get(`${base}/`)).text,
            list,
            (yield* get(`${base}/jobs?function=${encodeURIComponent(HOSTILE_NAME)}`)).text,
            (yield* get(`${base}/jobs?uniqkey=${encodeURIComponent(HOSTILE_KEY)}`)).text,
            (yield* get(`${base}/job/${handle}`)).text,
            (yield* post(`${base}/action/delete`, [["handle", handle], ["csrf", csrfOf(list)]])).text
          ]
          for (const text of pages) {
            assert.notInclude(text, "<script>alert")
            assert.notInclude(text, "<img src=x")
            assert.notInclude(text, "'\"><")
          }
          assert.include(pages[1]!, "&lt;script&gt;alert(1)&lt;/script&gt;")
          assert.include(pages[4]!, "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;")
          assert.include(pages[4]!, "k&#39;&quot;&gt;&lt;script&gt;alert(3)")
          // The filter found it by its key text.
          assert.deepStrictEqual(handlesOf(pages[3]!), [handle])
        })
    ))
})
