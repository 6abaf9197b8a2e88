/**
 * The web console: an `@effect/platform` HttpRouter over the `Storage` and `Gearman` services
 * the CLI uses, and `serve` to listen with it. Every request passes the token check (when a
 * token is set); every POST the CSRF check; actions are refused in read-only mode and logged.
 * Pages are in pages.ts, the tables of states, columns and actions in catalog.ts and
 * src/jobActions.ts.
 */
import { createServer } from "node:http"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpApp, HttpServerError } from "@effect/platform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Data, Duration, Effect, Either, Option, Schema } from "effect"
import type { Scope, Redacted } from "effect"
import type { Gearman } from "../gearman/Gearman.js"
import { WebListenFailed } from "../errors.js"
import { formatHostPort } from "../hostPort.js"
import type { HostPort } from "../hostPort.js"
import { formatHandle, nowSeconds, parseHandle } from "../Job.js"
import type { StoredJobId } from "../Job.js"
import { parseAge } from "../cli/jobs.js"
import { functionActionNamed } from "../functionActions.js"
import { JOB_ACTIONS, jobActionNamed } from "../jobActions.js"
import { jobServers, storedCounts } from "../overview.js"
import { DEFAULT_LEASE } from "../roles/QueueRunner.js"
import { Storage } from "../storage/Storage.js"
import type { ListCursor } from "../storage/Storage.js"
import { isLoopback } from "../cli/exposure.js"
import { CSS, JS } from "./assets.js"
import { authorized, csrfMatches, loginMatches, makeAuth, TOKEN_COOKIE } from "./auth.js"
import { isState, STATES } from "./catalog.js"
import type { Html } from "./html.js"
import { BULK_MAX, countMatching, runOnMatching } from "./bulk.js"
import { throughputSvg } from "./chart.js"
import { driverStatus, isDriverJobName, setProcesses } from "./driverConsole.js"
import type { ThroughputView } from "./chart.js"
import {
  bulkConfirmPage,
  bulkResultPage,
  confirmPage,
  driverPage,
  filterText,
  functionConfirmPage,
  functionResultPage,
  jobPage,
  jobsHref,
  jobsPage,
  messagePage,
  overviewPage,
  purgeFormPage,
  resultPage
} from "./pages.js"
import type { ActionResult, FunctionRow, JobsQuery, OverviewData, PageContext } from "./pages.js"

export { DEFAULT_WEB_LISTEN } from "./defaults.js"
/** Jobs one action request may name, at most. */
export const MAX_ACTION_JOBS = 1000
const PAGE_LIMIT_MAX = 500

export interface ConsoleOptions {
  /** Required on every request when set (bearer header, or the cookie a `?token=` link sets). */
  readonly token?: Option.Option<Redacted.Redacted<string>> | undefined
  /** Hide and refuse every action. */
  readonly readOnly?: boolean | undefined
  /** The runners' lease: a job due within it of now may be running (actions refuse it). */
  readonly lease?: Duration.DurationInput | undefined
  /** Jobs one action on a filter touches, at most (default `BULK_MAX`; tests lower it). */
  readonly bulkMax?: number | undefined
  /** The Driver's management console: the Driver page is on when given. */
  readonly driverConsole?: HostPort | undefined
}

class BadRequest extends Data.TaggedError("BadRequest")<{ readonly message: string; readonly cause?: unknown }> {}
class PageNotFound extends Data.TaggedError("PageNotFound")<{ readonly message: string }> {}
class Forbidden extends Data.TaggedError("Forbidden")<{ readonly message: string }> {}

/** Headers of every answer: no inline script or style can run, no framing, no referrer leak. */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY"
}

const page = (body: Html, status = 200) =>
  HttpServerResponse.text(body.text, {
    status,
    contentType: "text/html; charset=utf-8",
    headers: { "cache-control": "no-store" }
  })

/** Query parameters as a record, blank ones left out (an empty filter field means "any"). */
const queryOf = (request: HttpServerRequest.HttpServerRequest): Record<string, string> => {
  const params = new URL(request.url, "http://console").searchParams
  const out: Record<string, string> = {}
  for (const [k, v] of params) if (v.trim() !== "") out[k] = v.trim()
  return out
}

const IntText = Schema.NumberFromString.pipe(Schema.int(), Schema.positive())
const JobsParams = Schema.Struct({
  function: Schema.optional(Schema.String),
  state: Schema.optional(Schema.String.pipe(Schema.filter(isState, { message: () => "not a job state" }))),
  shard: Schema.optional(IntText),
  uniqkey: Schema.optional(Schema.String),
  order: Schema.optional(Schema.Literal("id", "runAfter")),
  after: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, PAGE_LIMIT_MAX)))
})

/** `dbid:jobid` or `dbid:jobid@runAfter`. */
const parseCursor = (text: string): Either.Either<ListCursor, BadRequest> => {
  const [handle = "", runAfter] = text.split("@")
  return Either.flatMap(
    Either.mapLeft(parseHandle(handle), (e) => new BadRequest({ message: e.reason, cause: e })),
    (h) => {
      if (runAfter === undefined) return Either.right(h)
      const n = Number(runAfter)
      return Number.isSafeInteger(n) && n >= 0
        ? Either.right({ ...h, runAfter: n })
        : Either.left(new BadRequest({ message: `cursor ${JSON.stringify(text)}: bad run_after` }))
    }
  )
}

const decodeJobsQuery = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const p = yield* Schema.decodeUnknown(JobsParams)(queryOf(request)).pipe(
      Effect.mapError((e) => new BadRequest({ message: `bad filter: ${e.message}`, cause: e }))
    )
    const order = p.order ?? "id"
    const after = p.after === undefined ? undefined : yield* parseCursor(p.after)
    if (after !== undefined && order === "runAfter" && after.runAfter === undefined) {
      return yield* new BadRequest({ message: "a page by run after continues from dbid:jobid@runAfter" })
    }
    const q: JobsQuery = {
      function: p.function,
      state: p.state,
      shard: p.shard,
      uniqkey: p.uniqkey,
      order,
      after,
      limit: p.limit ?? 50
    }
    return q
  })

const FunctionForm = Schema.Struct({
  csrf: Schema.optional(Schema.String),
  function: Schema.optional(Schema.String),
  olderThan: Schema.optional(Schema.String),
  step: Schema.optional(Schema.Literal("confirm", "run"))
})

const ProcessesForm = Schema.Struct({
  csrf: Schema.optional(Schema.String),
  job: Schema.optional(Schema.String),
  min: Schema.optional(Schema.String),
  max: Schema.optional(Schema.String)
})
const Count = Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())

const ActionForm = Schema.Struct({
  csrf: Schema.optional(Schema.String),
  handle: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String))),
  step: Schema.optional(Schema.Literal("confirm", "run")),
  force: Schema.optional(Schema.String),
  back: Schema.optional(Schema.String),
  /** `filter`: every job matching the filter fields below, not the `handle`s. */
  scope: Schema.optional(Schema.Literal("filter")),
  function: Schema.optional(Schema.String),
  state: Schema.optional(Schema.String),
  shard: Schema.optional(Schema.String),
  uniqkey: Schema.optional(Schema.String)
})

const FilterParams = JobsParams.pipe(Schema.pick("function", "state", "shard", "uniqkey"))

/** The list filter a bulk action's form carries (blank fields mean "any", as on the list). */
const decodeFilter = (form: Record<string, string | ReadonlyArray<string> | undefined>) => {
  const fields: Record<string, string> = {}
  for (const k of ["function", "state", "shard", "uniqkey"] as const) {
    const v = form[k]
    if (typeof v === "string" && v.trim() !== "") fields[k] = v.trim()
  }
  return Schema.decodeUnknown(FilterParams)(fields).pipe(
    Effect.mapError((e) => new BadRequest({ message: `bad filter: ${e.message}`, cause: e }))
  )
}

/** A return address inside the console only (no open redirect). */
const safeBack = (back: string | undefined) => back !== undefined && /^\/(?![/\\])[^\s]*$/.test(back) ? back : "/jobs"

/** The chart's figures: the last hour, and what is missing from them. */
export const throughputView: Effect.Effect<ThroughputView, never, Storage> = Effect.map(
  Effect.flatMap(Storage, (s) => s.throughput(60)),
  (t) => {
    const notes = [
      t.missing.length === 0 ? "" : `shard ${t.missing.join(", ")} without migration 0006`,
      t.unavailable.length === 0 ? "" : `shard ${t.unavailable.map((u) => u.shard).join(", ")} unavailable`
    ].filter((x) => x !== "")
    return { minutes: t.minutes, note: notes.length === 0 ? null : notes.join("; ") }
  }
)

/** The overview's figures: counts (summed per function, or per shard), job servers, failures. */
export const overviewData = (perShard: boolean): Effect.Effect<OverviewData, never, Storage | Gearman> =>
  Effect.gen(function*() {
    const [stored, { byFunction, servers }, now, controls, throughput] = yield* Effect.all(
      [
        storedCounts,
        jobServers,
        nowSeconds,
        Effect.either(Effect.flatMap(Storage, (s) => s.flow.controls(s.flow.home))),
        throughputView
      ],
      { concurrency: "unbounded" }
    )
    const paused = new Set(
      Either.isRight(controls) ? controls.right.filter((c) => c.paused).map((c) => c.funcname) : []
    )
    const rows = new Map<
      string,
      { shard: number | null; funcname: string; counts: Record<string, number>; oldest: number | null }
    >()
    for (const c of stored.counts) {
      const key = perShard ? `${c.dbid}\u0000${c.funcname}` : c.funcname
      const row = rows.get(key) ?? { shard: perShard ? c.dbid : null, funcname: c.funcname, counts: {}, oldest: null }
      for (const s of STATES) row.counts[s.name] = (row.counts[s.name] ?? 0) + s.count(c)
      if (c.oldestDue !== null && (row.oldest === null || c.oldestDue < row.oldest)) row.oldest = c.oldestDue
      rows.set(key, row)
    }
    // A paused function with no stored job still has its row: it can be resumed from there.
    for (const funcname of paused) {
      if (![...rows.values()].some((r) => r.funcname === funcname)) {
        rows.set(funcname, {
          shard: null,
          funcname,
          counts: Object.fromEntries(STATES.map((s) => [s.name, 0])),
          oldest: null
        })
      }
    }
    const functions = [...rows.values()]
      .sort((a, b) => (a.funcname < b.funcname ? -1 : a.funcname > b.funcname ? 1 : (a.shard ?? 0) - (b.shard ?? 0)))
      .map((r): FunctionRow => {
        const q = byFunction.get(r.funcname)
        return {
          shard: r.shard,
          funcname: r.funcname,
          counts: r.counts,
          oldestDueAge: r.oldest === null ? null : Math.max(0, now - r.oldest),
          queued: q === undefined ? null : Math.max(0, q.total - q.running),
          running: q?.running ?? null,
          workers: q?.workers ?? null,
          paused: paused.has(r.funcname)
        }
      })
    return {
      generatedAt: now,
      perShard,
      columns: STATES.map((s) => ({ name: s.name, label: s.label, description: s.description })),
      functions,
      servers,
      unavailable: stored.unavailable,
      gearmandError: servers.length > 0 && servers.every((s) => !s.up) ? "no job server answers" : null,
      flowError: Either.isLeft(controls) ? `paused states unknown: ${controls.left.message}` : null,
      throughput
    }
  })

/** The router: every page and endpoint, before the token check and the headers. */
export const router = (options: ConsoleOptions, ctx: PageContext) => {
  const driverAddress = options.driverConsole === undefined
    ? Effect.fail(new PageNotFound({ message: "no Driver console given (garivini web --driver-console HOST:PORT)" }))
    : Effect.succeed(options.driverConsole)
  const leaseSeconds = Math.ceil(Duration.toSeconds(Duration.decode(options.lease ?? DEFAULT_LEASE)))
  const readOnly = options.readOnly === true
  return HttpRouter.empty.pipe(
    HttpRouter.get(
      "/assets/console.css",
      HttpServerResponse.text(CSS, {
        contentType: "text/css; charset=utf-8",
        headers: { "cache-control": "max-age=300" }
      })
    ),
    HttpRouter.get(
      "/assets/console.js",
      HttpServerResponse.text(JS, {
        contentType: "text/javascript; charset=utf-8",
        headers: { "cache-control": "max-age=300" }
      })
    ),
    HttpRouter.get(
      "/",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const data = yield* overviewData(queryOf(request).shards === "1")
        return page(overviewPage(data, ctx))
      })
    ),
    HttpRouter.get(
      "/api/overview",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        return yield* HttpServerResponse.json(yield* overviewData(queryOf(request).shards === "1"), {
          headers: { "cache-control": "no-store" }
        })
      })
    ),
    HttpRouter.get(
      "/api/throughput.svg",
      Effect.map(throughputView, (view) =>
        HttpServerResponse.text(throughputSvg(view).text, {
          contentType: "image/svg+xml; charset=utf-8",
          headers: { "cache-control": "no-store" }
        }))
    ),
    HttpRouter.get(
      "/jobs",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const q = yield* decodeJobsQuery(request)
        const storage = yield* Storage
        const jobs = yield* storage.list({
          funcname: q.function,
          state: q.state !== undefined && isState(q.state) ? q.state : undefined,
          dbid: q.shard,
          uniqkey: q.uniqkey,
          order: q.order,
          after: q.after,
          limit: q.limit
        })
        const now = yield* nowSeconds
        return page(jobsPage(q, jobs, storage.shardIds, now, jobsHref(q, q.after), ctx))
      })
    ),
    HttpRouter.get(
      "/job/:handle",
      Effect.gen(function*() {
        const { handle } = yield* HttpRouter.params
        const h = yield* Either.mapLeft(parseHandle(handle ?? ""), (e) => new BadRequest({ message: e.reason }))
        const job = yield* Effect.flatMap(Storage, (s) => s.get(h))
        if (Option.isNone(job)) return yield* new PageNotFound({ message: `no job ${formatHandle(h)}` })
        return page(jobPage(job.value, yield* nowSeconds, leaseSeconds, ctx))
      })
    ),
    HttpRouter.post(
      "/action/:name",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const { name } = yield* HttpRouter.params
        const form = yield* HttpServerRequest.schemaBodyUrlParams(ActionForm).pipe(
          Effect.mapError((e) => new BadRequest({ message: `bad form: ${e.message}`, cause: e }))
        )
        // CSRF first: a forged form learns nothing, not even whether the console is read-only.
        if (!csrfMatches(ctx, form.csrf)) return yield* new Forbidden({ message: "missing or wrong CSRF token" })
        if (readOnly) return yield* new Forbidden({ message: "the console is read-only (--read-only)" })
        const action = yield* Option.match(jobActionNamed(name ?? ""), {
          onNone: () => Effect.fail(new PageNotFound({ message: `no action ${JSON.stringify(name)}` })),
          onSome: Effect.succeed
        })
        if (form.scope === "filter") {
          const q = yield* decodeFilter(form)
          const filter = {
            funcname: q.function,
            state: q.state !== undefined && isState(q.state) ? q.state : undefined,
            dbid: q.shard,
            uniqkey: q.uniqkey
          }
          const back = safeBack(form.back)
          if (form.step !== "run")
            return page(bulkConfirmPage(action, q, yield* countMatching(filter, ctx.bulkMax), back, ctx))
          const force = form.force === "on"
          const result = yield* runOnMatching(action, filter, { lease: options.lease, force }, ctx.bulkMax)
          yield* Effect.logInfo("web action").pipe(Effect.annotateLogs({
            action: action.name,
            filter: filterText(q),
            matched: result.total,
            more: result.more,
            done: result.outcomes["Done"] ?? 0,
            force,
            remote: Option.getOrElse(request.remoteAddress, () => "unknown")
          }))
          return page(bulkResultPage(action, q, result, back, ctx))
        }
        const texts = form.handle === undefined ? [] : typeof form.handle === "string" ? [form.handle] : form.handle
        if (texts.length === 0) return yield* new BadRequest({ message: "no job selected" })
        if (texts.length > MAX_ACTION_JOBS) {
          return yield* new BadRequest({ message: `at most ${MAX_ACTION_JOBS} jobs an action` })
        }
        const handles: Array<StoredJobId> = []
        for (const t of texts)
          handles.push(yield* Either.mapLeft(parseHandle(t), (e) => new BadRequest({ message: e.reason })))
        const back = safeBack(form.back)
        const formatted = handles.map(formatHandle)
        if (form.step !== "run") return page(confirmPage(action, formatted, back, ctx))
        const force = form.force === "on"
        const outcomes = yield* Effect.forEach(handles, (h) =>
          Effect.map(
            Effect.either(action.run(h, { lease: options.lease, force })),
            (r): ActionResult =>
              Either.isRight(r)
                ? { handle: formatHandle(h), outcome: r.right._tag, message: r.right.message }
                : { handle: formatHandle(h), outcome: "Failed", message: r.left.message }
          ), { concurrency: 4 })
        yield* Effect.logInfo("web action").pipe(Effect.annotateLogs({
          action: action.name,
          handles: formatted.length > 20
            ? `${formatted.slice(0, 20).join(",")},… (${formatted.length})`
            : formatted.join(","),
          done: outcomes.filter((o) => o.outcome === "Done").length,
          force,
          remote: Option.getOrElse(request.remoteAddress, () => "unknown")
        }))
        return page(resultPage(action, outcomes, back, ctx))
      })
    ),
    HttpRouter.get(
      "/driver",
      Effect.gen(function*() {
        const address = yield* driverAddress
        const jobs = yield* driverStatus(address)
        return page(driverPage(formatHostPort(address), jobs, ctx))
      })
    ),
    HttpRouter.post(
      "/driver/processes",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const form = yield* HttpServerRequest.schemaBodyUrlParams(ProcessesForm).pipe(
          Effect.mapError((e) => new BadRequest({ message: `bad form: ${e.message}`, cause: e }))
        )
        if (!csrfMatches(ctx, form.csrf)) return yield* new Forbidden({ message: "missing or wrong CSRF token" })
        if (readOnly) return yield* new Forbidden({ message: "the console is read-only (--read-only)" })
        const address = yield* driverAddress
        const job = form.job ?? ""
        if (!isDriverJobName(job)) return yield* new BadRequest({ message: "which Driver job?" })
        const [min, max] = yield* Effect.all([
          Schema.decodeUnknown(Count)(form.min?.trim() ?? ""),
          Schema.decodeUnknown(Count)(form.max?.trim() ?? "")
        ]).pipe(Effect.mapError((e) => new BadRequest({ message: "min and max are whole numbers >= 0", cause: e })))
        // The Driver checks min <= max and its hard limits; its refusal is shown on the page.
        const outcome = yield* Effect.either(setProcesses(address, job, min, max))
        yield* Effect.logInfo("web action").pipe(Effect.annotateLogs({
          action: "set-processes",
          driverJob: job,
          min,
          max,
          done: Either.isRight(outcome),
          remote: Option.getOrElse(request.remoteAddress, () => "unknown")
        }))
        const jobs = yield* driverStatus(address)
        const notice = Either.isRight(outcome)
          ? `${job}: min ${min}, max ${max} processes`
          : `refused: ${outcome.left.reason}`
        return page(driverPage(formatHostPort(address), jobs, ctx, notice), Either.isRight(outcome) ? 200 : 400)
      })
    ),
    HttpRouter.get(
      "/function/purge-dead",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (readOnly) return yield* new Forbidden({ message: "the console is read-only (--read-only)" })
        const funcname = queryOf(request).function
        if (funcname === undefined) return yield* new BadRequest({ message: "which function?" })
        const counts = yield* Effect.flatMap(Storage, (s) => s.counts())
        const dead = counts.filter((c) => c.funcname === funcname).reduce((n, c) => n + c.dead, 0)
        return page(purgeFormPage(funcname, dead, ctx))
      })
    ),
    HttpRouter.post(
      "/function/:name",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const { name } = yield* HttpRouter.params
        const form = yield* HttpServerRequest.schemaBodyUrlParams(FunctionForm).pipe(
          Effect.mapError((e) => new BadRequest({ message: `bad form: ${e.message}`, cause: e }))
        )
        if (!csrfMatches(ctx, form.csrf)) return yield* new Forbidden({ message: "missing or wrong CSRF token" })
        if (readOnly) return yield* new Forbidden({ message: "the console is read-only (--read-only)" })
        const action = yield* Option.match(functionActionNamed(name ?? ""), {
          onNone: () => Effect.fail(new PageNotFound({ message: `no function action ${JSON.stringify(name)}` })),
          onSome: Effect.succeed
        })
        const funcname = form.function ?? ""
        if (funcname === "") return yield* new BadRequest({ message: "which function?" })
        let olderThan: number | undefined
        if (action.needsAge) {
          const age = parseAge(form.olderThan ?? "")
          if (Option.isNone(age)) {
            return yield* new BadRequest({ message: "older than: 7d, 12h, 30m, 90s or seconds" })
          }
          olderThan = age.value
        }
        const input = { funcname, olderThan }
        // Destructive actions ask first; pause and resume lose nothing and run at once.
        if (action.destructive && form.step !== "run") return page(functionConfirmPage(action, input, ctx))
        const message = yield* action.run(input)
        yield* Effect.logInfo("web action").pipe(Effect.annotateLogs({
          action: action.name,
          function: funcname,
          ...(olderThan === undefined ? {} : { olderThan }),
          result: message,
          remote: Option.getOrElse(request.remoteAddress, () => "unknown")
        }))
        return page(functionResultPage(action, message, ctx))
      })
    )
  )
}

/** Answers a request the router failed, as a page with the right status. */
const failurePage = (ctx: PageContext) => (error: { readonly _tag: string; readonly message?: string }) =>
  Effect.succeed(failureResponse(ctx, { _tag: error._tag, message: error.message ?? error._tag }))

const failureResponse = (ctx: PageContext, error: { readonly _tag: string; readonly message: string }) => {
  switch (error._tag) {
    case "RouteNotFound":
      return page(messagePage("Not found", "No such page.", ctx), 404)
    case "PageNotFound":
      return page(messagePage("Not found", error.message, ctx), 404)
    case "BadRequest":
    case "InvalidArgument": // a function name storage refuses (pause, resume)
      return page(messagePage("Bad request", error.message, ctx), 400)
    case "Forbidden":
      return page(messagePage("Forbidden", error.message, ctx), 403)
    default:
      // A shard or job server failing: said, not hidden; the next refresh tries again.
      return page(messagePage("Unavailable", error.message, ctx), 503)
  }
}

/**
 * The console as an app: the token check (and the `?token=` login, which sets the cookie and
 * drops the token from the address), the router, failures as pages, the security headers.
 */
export const makeApp = (
  options: ConsoleOptions
): Effect.Effect<HttpApp.Default<never, Storage | Gearman>> =>
  Effect.gen(function*() {
    const auth = makeAuth(options.token ?? Option.none())
    const ctx: PageContext = {
      csrf: auth.csrf,
      readOnly: options.readOnly === true,
      actions: JOB_ACTIONS,
      bulkMax: options.bulkMax ?? BULK_MAX,
      driver: options.driverConsole !== undefined
    }
    const app = yield* HttpRouter.toHttpApp(router(options, ctx))
    const unauthorized = HttpServerResponse.text("401 unauthorized: this console needs its token (--web-token)\n", {
      status: 401,
      headers: { "www-authenticate": "Bearer" }
    })
    return Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const url = new URL(request.url, "http://console")
      const login = url.searchParams.get("token")
      if (login !== null && Option.isSome(auth.token)) {
        if (!loginMatches(auth, login)) return unauthorized
        url.searchParams.delete("token")
        return yield* HttpServerResponse.redirect(`${url.pathname}${url.search}`, { status: 303 }).pipe(
          HttpServerResponse.setCookie(TOKEN_COOKIE, login, { httpOnly: true, sameSite: "strict", path: "/" })
        )
      }
      if (!authorized(auth, { authorization: request.headers.authorization }, request.cookies)) return unauthorized
      return yield* app
    }).pipe(
      Effect.catchAll(failurePage(ctx)),
      Effect.map(HttpServerResponse.setHeaders(SECURITY_HEADERS))
    )
  })

export interface WebOptions extends ConsoleOptions {
  readonly host: string
  /** 0: any free port. */
  readonly port: number
}

export interface RunningConsole {
  /** The address it listens on, host:port. */
  readonly address: string
  /** The URL to open (with the login link's `?token=` left out). */
  readonly url: string
}

/** Listens and serves the console until the scope closes; warns when reachable beyond loopback without a token. */
export const serve = (
  options: WebOptions
): Effect.Effect<RunningConsole, WebListenFailed, Scope.Scope | Storage | Gearman> =>
  Effect.gen(function*() {
    const server = yield* NodeHttpServer.make(() => createServer(), { host: options.host, port: options.port }).pipe(
      Effect.mapError((e: HttpServerError.ServeError) =>
        new WebListenFailed({
          address: formatHostPort(options),
          reason: e.cause instanceof Error ? e.cause.message : String(e.cause),
          cause: e
        })
      )
    )
    yield* server.serve(yield* makeApp(options))
    const port = server.address._tag === "TcpAddress" ? server.address.port : options.port
    const address = formatHostPort({ host: options.host, port })
    const browseHost = options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host
    if (!isLoopback(options.host) && Option.isNone(options.token ?? Option.none())) {
      yield* Effect.logWarning(
        `the web console listens on ${address}, beyond loopback, without a token: anyone who can reach it can ` +
          `read every job and retry or delete them; set --web-token (or GARIVINI_WEB_TOKEN), or bind 127.0.0.1`
      ).pipe(Effect.annotateLogs({ listen: address }))
    }
    yield* Effect.logInfo("web console listening").pipe(
      Effect.annotateLogs({ listen: address, readOnly: options.readOnly === true })
    )
    return { address, url: `http://${formatHostPort({ host: browseHost, port })}/` }
  })
