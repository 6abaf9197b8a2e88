// The chaos soak's verdict, from the ledger alone: which accepted jobs ran, which ran more than
// once (and whether a fault overlapped the runs), how long each kind of fault took to recover
// from, and the throughput inside and outside fault windows.
import type { Fault } from "./faults.js"
import type { LedgerEntry } from "./ledger.js"
import type { Book, JobKind } from "./load.js"
import type { LeftRow } from "./topology.js"

export interface Duplicate {
  readonly id: string
  readonly kind: JobKind | "unacknowledged"
  readonly runs: number
  /** The two runs' starts (ms since the epoch) of the first extra run, and the faults overlapping them. */
  readonly firstStart: number
  readonly secondStart: number
  readonly handles: ReadonlyArray<string>
  readonly workers: ReadonlyArray<string>
  readonly explainedBy: ReadonlyArray<string>
}

export interface Recovery {
  readonly count: number
  readonly p50Ms: number
  readonly maxMs: number
  /** Jobs accepted per second while faults of this kind lasted (those of at least half a second), or null. */
  readonly acceptedPerSecond: number | null
}

export interface Report {
  readonly seed: number
  readonly loadSeconds: number
  readonly settings: Readonly<Record<string, string | number | boolean>>
  readonly accepted: number
  readonly acceptedByKind: Readonly<Record<string, number>>
  readonly unacknowledged: number
  readonly unacknowledgedRan: number
  readonly callErrors: Readonly<Record<string, number>>
  readonly callErrorSamples: Readonly<Record<string, ReadonlyArray<string>>>
  readonly ran: number
  readonly attempts: number
  readonly retriesAsked: number
  readonly lost: number
  readonly lostJobs: ReadonlyArray<{ readonly id: string; readonly kind: string; readonly acceptedAt: string }>
  /** Accepted jobs that did not run but whose row is still stored (e.g. backed off): late, not lost. */
  readonly notRunStored: ReadonlyArray<LeftRow & { readonly kind: string; readonly runAfterIso: string }>
  readonly duplicated: { readonly explained: number; readonly unexplained: number; readonly uniqueUnexplained: number }
  readonly duplicates: ReadonlyArray<Duplicate>
  readonly uniqueKeys: { readonly keys: number; readonly ranOnce: number; readonly storedTwice: number }
  readonly rowsLeft: ReadonlyArray<{ readonly shard: number; readonly rows: number | string }>
  readonly leakedPids: ReadonlyArray<number>
  readonly tornLedgerLines: number
  readonly faults: ReadonlyArray<Fault & { readonly recoveryMs: number | null }>
  readonly recovery: Readonly<Record<string, Recovery>>
  readonly throughput: {
    readonly duringFaults: number
    readonly outsideFaults: number
    readonly faultSeconds: number
    /** Jobs accepted per second outside every fault window, during the load. */
    readonly acceptedOutsideFaults: number
  }
  readonly setupMs: number
  readonly drainMs: number
  readonly wallMs: number
  readonly failed: ReadonlyArray<string>
}

const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return 0
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** A fault overlaps the window when it began before the window's end and ended after its start. */
const overlapping = (faults: ReadonlyArray<Fault>, from: number, to: number) =>
  faults.filter((f) => f.start <= to && f.end >= from)

export interface AnalysisInput {
  readonly seed: number
  readonly loadSeconds: number
  readonly settings: Readonly<Record<string, string | number | boolean>>
  readonly book: Book
  readonly entries: ReadonlyArray<LedgerEntry>
  readonly torn: number
  readonly faults: ReadonlyArray<Fault>
  readonly loadStart: number
  readonly loadEnd: number
  readonly rowsLeft: ReadonlyArray<{ readonly shard: number; readonly rows: number | string }>
  readonly leftRows: ReadonlyArray<LeftRow>
  readonly leakedPids: ReadonlyArray<number>
  readonly setupMs: number
  readonly drainMs: number
  readonly wallMs: number
  /** A duplicate counts as explained by a fault that ended up to this long before its first run (the lease). */
  readonly explainSlackMs: number
}

export const analyse = (input: AnalysisInput): Report => {
  const { book, entries, faults } = input
  const dones = new Map<string, Array<LedgerEntry>>()
  let retriesAsked = 0
  for (const e of entries) {
    if (e.ev === "fail") retriesAsked++
    if (e.ev !== "done") continue
    const list = dones.get(e.id)
    if (list === undefined) dones.set(e.id, [e])
    else list.push(e)
  }
  /**
   * The start of the attempt that ended in `done`: attempts of a job in one process are paired in
   * order (a `fail` or `done` ends the earliest open start), as two runs of one job may overlap.
   */
  const open = new Map<string, Array<number>>()
  const startOfDone = new Map<LedgerEntry, number>()
  for (const e of entries) {
    const key = `${e.id}\u0000${e.p}`
    const list = open.get(key) ?? []
    open.set(key, list)
    if (e.ev === "start") list.push(e.t)
    else {
      const t = list.shift()
      if (e.ev === "done") startOfDone.set(e, t ?? e.t)
    }
  }
  const startOf = (done: LedgerEntry): number => startOfDone.get(done) ?? done.t

  const acceptedByKind: Record<string, number> = {}
  for (const a of book.accepted.values()) acceptedByKind[a.kind] = (acceptedByKind[a.kind] ?? 0) + 1

  const stored = new Map(input.leftRows.map((r) => [r.id, r]))
  const notRun = [...book.accepted.values()].filter((a) => !dones.has(a.id))
  const notRunStored = notRun.flatMap((a) => {
    const row = stored.get(a.id)
    return row === undefined
      ? []
      : [{ ...row, kind: a.kind, runAfterIso: new Date(row.runAfter * 1000).toISOString() }]
  })
  const lostJobs = notRun.filter((a) => !stored.has(a.id)).map((a) => ({
    id: a.id,
    kind: a.kind,
    acceptedAt: new Date(a.acceptedAt).toISOString()
  }))

  const duplicates: Array<Duplicate> = []
  for (const [id, ds] of dones) {
    if (ds.length < 2) continue
    const firstStart = startOf(ds[0]!)
    const secondStart = startOf(ds[1]!)
    // The faults during the first run (or within a second of it: its completion is written after
    // it), else those between it and the second run, else those up to a lease before it.
    const during = overlapping(faults, firstStart - 1000, ds[0]!.t + 1000)
    const near = during.length > 0 ? during : overlapping(faults, firstStart - 1000, secondStart)
    const explainedBy = (near.length > 0 ? near : overlapping(faults, firstStart - input.explainSlackMs, secondStart))
      .map((f) =>
        `${f.kind} (${f.target}) ${new Date(f.start).toISOString().slice(11, 23)}–${
          new Date(f.end).toISOString().slice(11, 23)
        }`
      )
    duplicates.push({
      id,
      kind: book.accepted.get(id)?.kind ?? "unacknowledged",
      runs: ds.length,
      firstStart,
      secondStart,
      handles: [...new Set(ds.map((d) => d.h))],
      workers: ds.map((d) => `${d.w}/${d.p}`),
      explainedBy
    })
  }
  const unexplained = duplicates.filter((d) => d.explainedBy.length === 0)
  const uniqueUnexplained = unexplained.filter((d) => d.id.startsWith("u"))

  const uniqueIds = [...book.accepted.values()].filter((a) => a.kind === "unique")
  const uniqueKeys = {
    keys: uniqueIds.length,
    ranOnce: uniqueIds.filter((a) => (dones.get(a.id)?.length ?? 0) === 1).length,
    storedTwice: [...book.uniqueCreated.values()].filter((n) => n > 1).length
  }

  // Recovery: the jobs pending during a fault (accepted and due before it ended, not yet run when
  // it began); from the fault's end to the start of the run of the last of them, 0 if none waited.
  const firstRunStart = new Map<string, number>()
  for (const [id, ds] of dones) firstRunStart.set(id, startOf(ds[0]!))
  const withRecovery = faults.map((f) => {
    let last = f.end
    for (const a of book.accepted.values()) {
      if (a.acceptedAt > f.end || a.dueAt > f.end) continue
      const ran = firstRunStart.get(a.id)
      if (ran === undefined || ran < f.start) continue
      if (ran > last) last = ran
    }
    return { ...f, recoveryMs: last - f.end }
  })
  const recovery: Record<string, Recovery> = {}
  const byKind = new Map<string, Array<number>>()
  for (const f of withRecovery) {
    const list = byKind.get(f.kind) ?? []
    list.push(f.recoveryMs)
    byKind.set(f.kind, list)
  }
  const acceptedTimes = [...book.accepted.values()].map((a) => a.acceptedAt)
  const acceptedRate = (kind: string): number | null => {
    const windows = faults.filter((f) => f.kind === kind && f.end - f.start >= 500)
    const ms = windows.reduce((n, f) => n + f.end - f.start, 0)
    if (ms === 0) return null
    const n = acceptedTimes.filter((t) => windows.some((f) => t >= f.start && t <= f.end)).length
    return Math.round((n * 1000) / ms)
  }
  for (const [kind, xs] of [...byKind].sort(([a], [b]) => a.localeCompare(b))) {
    recovery[kind] = {
      count: xs.length,
      p50Ms: percentile(xs, 50),
      maxMs: Math.max(...xs),
      acceptedPerSecond: acceptedRate(kind)
    }
  }

  // Throughput: successful runs per second inside fault windows and outside them, during the load.
  let inside = 0
  let outside = 0
  for (const ds of dones.values()) {
    for (const d of ds) {
      if (d.t < input.loadStart || d.t > input.loadEnd) continue
      if (faults.some((f) => d.t >= f.start && d.t <= f.end)) inside++
      else outside++
    }
  }
  // Time under at least one fault (windows of overlapping fault loops merged).
  let faultMs = 0
  let reach = input.loadStart
  for (const f of [...faults].sort((a, b) => a.start - b.start)) {
    const from = Math.max(f.start, reach)
    const to = Math.min(f.end, input.loadEnd)
    if (to > from) faultMs += to - from
    reach = Math.max(reach, Math.min(f.end, input.loadEnd))
  }
  const outsideMs = input.loadEnd - input.loadStart - faultMs

  const unacknowledgedRan = [...book.unacknowledged].filter((id) => dones.has(id)).length
  const rowsLeftTotal = input.rowsLeft.reduce((n, r) => n + (typeof r.rows === "number" ? r.rows : 1), 0)
  const failed = [
    ...(lostJobs.length > 0 ? [`${lostJobs.length} accepted job(s) never ran and have no row`] : []),
    ...(notRunStored.length > 0
      ? [`${notRunStored.length} accepted job(s) not run by the end of the drain (row still stored)`]
      : []),
    ...(uniqueUnexplained.length > 0
      ? [`${uniqueUnexplained.length} unique job(s) ran twice with no fault to explain it`]
      : []),
    ...(rowsLeftTotal > 0 ? [`rows left in the shards: ${JSON.stringify(input.rowsLeft)}`] : []),
    ...(input.leakedPids.length > 0 ? [`processes still running after the run: ${input.leakedPids.join(", ")}`] : [])
  ]

  return {
    seed: input.seed,
    loadSeconds: input.loadSeconds,
    settings: input.settings,
    accepted: book.accepted.size,
    acceptedByKind,
    unacknowledged: book.unacknowledged.size,
    unacknowledgedRan,
    callErrors: Object.fromEntries(book.callErrors),
    callErrorSamples: Object.fromEntries(book.callErrorSamples),
    ran: [...book.accepted.keys()].filter((id) => dones.has(id)).length,
    attempts: entries.filter((e) => e.ev === "start").length,
    retriesAsked,
    lost: lostJobs.length,
    lostJobs: lostJobs.slice(0, 50),
    notRunStored: notRunStored.slice(0, 50),
    duplicated: {
      explained: duplicates.length - unexplained.length,
      unexplained: unexplained.length,
      uniqueUnexplained: uniqueUnexplained.length
    },
    duplicates: duplicates.slice(0, 100),
    uniqueKeys,
    rowsLeft: input.rowsLeft,
    leakedPids: input.leakedPids,
    tornLedgerLines: input.torn,
    faults: withRecovery,
    recovery,
    throughput: {
      duringFaults: faultMs > 0 ? Math.round((inside * 1000) / faultMs) : 0,
      outsideFaults: outsideMs > 0 ? Math.round((outside * 1000) / outsideMs) : 0,
      faultSeconds: Math.round(faultMs / 100) / 10,
      acceptedOutsideFaults: outsideMs > 0
        ? Math.round(
          (acceptedTimes.filter((t) =>
            t >= input.loadStart && t <= input.loadEnd && !faults.some((f) => t >= f.start && t <= f.end)
          ).length * 1000) / outsideMs
        )
        : 0
    },
    setupMs: input.setupMs,
    drainMs: input.drainMs,
    wallMs: input.wallMs,
    failed
  }
}

const clock = (t: number) => new Date(t).toISOString().slice(11, 23)

/** The report as the table printed at the end. */
export const formatReport = (r: Report): string => {
  const lines: Array<string> = []
  const row = (k: string, v: string | number) => lines.push(`  ${k.padEnd(44)} ${v}`)
  lines.push(`chaos soak, seed ${r.seed}, ${r.loadSeconds} s of load and faults`)
  lines.push(`  settings: ${Object.entries(r.settings).map(([k, v]) => `${k}=${v}`).join(", ")}`)
  row("jobs accepted", `${r.accepted} (${Object.entries(r.acceptedByKind).map(([k, n]) => `${k} ${n}`).join(", ")})`)
  row("calls failed or timed out (unacknowledged)", `${r.unacknowledged} jobs, ${r.unacknowledgedRan} of them ran`)
  for (const [what, samples] of Object.entries(r.callErrorSamples))
    lines.push(`    ${what} failed ${r.callErrors[what] ?? 0}×, e.g. ${samples.join(" | ")}`)
  row("accepted jobs run", `${r.ran} (${r.attempts} attempts, ${r.retriesAsked} retries asked by flaky jobs)`)
  row("duplicated: explained / unexplained", `${r.duplicated.explained} / ${r.duplicated.unexplained}`)
  row("unique jobs run twice with no fault", r.duplicated.uniqueUnexplained)
  row("unique keys: run once / keys", `${r.uniqueKeys.ranOnce} / ${r.uniqueKeys.keys}`)
  row("LOST (never ran, no row left)", r.lost)
  row("not run by the end, row still stored", r.notRunStored.length)
  row("rows left", r.rowsLeft.map((s) => `shard ${s.shard}: ${s.rows}`).join(", "))
  row("processes leaked", r.leakedPids.length)
  row(
    "throughput during / outside faults (runs/s)",
    `${r.throughput.duringFaults} / ${r.throughput.outsideFaults} (${r.throughput.faultSeconds} s in faults)`
  )
  row("set-up (servers, roles, workers)", `${(r.setupMs / 1000).toFixed(1)} s`)
  row("drain after the load", `${(r.drainMs / 1000).toFixed(1)} s`)
  row("whole run", `${(r.wallMs / 1000).toFixed(1)} s`)
  lines.push("  recovery per fault kind (fault end → last pending job running):")
  lines.push(
    `    ${"fault".padEnd(34)} ${"n".padStart(3)} ${"p50 ms".padStart(8)} ${"max ms".padStart(8)} ${
      "accepted/s".padStart(11)
    }  (outside faults: ${r.throughput.acceptedOutsideFaults}/s)`
  )
  for (const [kind, rec] of Object.entries(r.recovery))
    lines.push(
      `    ${kind.padEnd(34)} ${String(rec.count).padStart(3)} ${String(rec.p50Ms).padStart(8)} ${
        String(rec.maxMs).padStart(8)
      } ${String(rec.acceptedPerSecond ?? "–").padStart(11)}`
    )
  if (r.duplicates.length > 0) {
    lines.push("  duplicates:")
    for (const d of r.duplicates.slice(0, 20))
      lines.push(
        `    ${d.id} (${d.kind}) ${d.runs} runs, from ${clock(d.firstStart)} and ${clock(d.secondStart)}, on ${
          d.workers.join(", ")
        }, handles ${d.handles.join(" ")}; ${
          d.explainedBy.length > 0
            ? `faults: ${d.explainedBy.slice(0, 3).join("; ")}${d.explainedBy.length > 3 ? " …" : ""}`
            : "UNEXPLAINED"
        }`
      )
  }
  if (r.lostJobs.length > 0)
    lines.push(
      `  lost: ${r.lostJobs.slice(0, 20).map((j) => `${j.id} (${j.kind}, accepted ${j.acceptedAt})`).join(", ")}`
    )
  if (r.notRunStored.length > 0)
    lines.push(
      `  not run, still stored: ${
        r.notRunStored.slice(0, 10).map((j) =>
          `${j.id} (${j.kind}, shard ${j.shard} job ${j.jobid}, ${j.flag}, failcount ${j.failcount}, run_after ${j.runAfterIso})`
        ).join(", ")
      }`
    )
  lines.push(r.failed.length === 0 ? "  verdict: PASS" : `  verdict: FAIL — ${r.failed.join("; ")}`)
  return lines.join("\n")
}
