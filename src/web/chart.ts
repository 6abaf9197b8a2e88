/**
 * Jobs completed and failed per minute over the last hour, as an inline SVG (no script, no
 * asset from elsewhere): one stacked bar a minute, completed below failed, scaled to the busiest
 * minute, each with a tooltip. The overview holds it, and `/api/throughput.svg` serves it alone for
 * the page's refresh.
 */
import type { MinuteCounts } from "../storage/Storage.js"
import { html } from "./html.js"
import type { Html } from "./html.js"

export interface ThroughputView {
  readonly minutes: ReadonlyArray<MinuteCounts>
  /** Why some or all figures are missing (shards without migration 0006, or down). */
  readonly note: string | null
}

const WIDTH = 600
const HEIGHT = 150
const TOP = 22
const BOTTOM = 18
const hhmm = (minute: number) => new Date(minute * 60_000).toISOString().slice(11, 16)

export const throughputSvg = (view: ThroughputView): Html => {
  const n = Math.max(1, view.minutes.length)
  const slot = WIDTH / n
  const max = Math.max(1, ...view.minutes.map((m) => m.completed + m.failed))
  const plot = HEIGHT - TOP - BOTTOM
  const completed = view.minutes.reduce((s, m) => s + m.completed, 0)
  const failed = view.minutes.reduce((s, m) => s + m.failed, 0)
  const bars = view.minutes.map((m, i) => {
    const x = (i * slot + 1).toFixed(1)
    const w = Math.max(1, slot - 2).toFixed(1)
    const hc = (m.completed / max) * plot
    const hf = (m.failed / max) * plot
    const base = HEIGHT - BOTTOM
    return html`<g data-minute="${m.minute}" data-completed="${m.completed}" data-failed="${m.failed}"><title>${
      hhmm(m.minute)
    } UTC: ${m.completed} completed, ${m.failed} failed</title>${
      m.completed > 0
        ? html`<rect class="bar-completed" x="${x}" y="${(base - hc).toFixed(1)}" width="${w}" height="${
          hc.toFixed(1)
        }"/>`
        : ""
    }${
      m.failed > 0
        ? html`<rect class="bar-failed" x="${x}" y="${(base - hc - hf).toFixed(1)}" width="${w}" height="${
          hf.toFixed(1)
        }"/>`
        : ""
    }<rect class="bar-hit" x="${x}" y="${TOP}" width="${w}" height="${plot}"/></g>`
  })
  const first = view.minutes[0]
  const last = view.minutes[view.minutes.length - 1]
  return html`<svg xmlns="http://www.w3.org/2000/svg" id="throughput-chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="Jobs completed and failed per minute, last hour" data-completed="${completed}" data-failed="${failed}">
<text class="chart-caption" x="0" y="13">${completed} completed · ${failed} failed in the last hour${
    view.note === null ? "" : ` (${view.note})`
  }</text>
<text class="chart-axis" x="${WIDTH}" y="13" text-anchor="end">max ${max}/min</text>
<line class="chart-base" x1="0" y1="${HEIGHT - BOTTOM}" x2="${WIDTH}" y2="${HEIGHT - BOTTOM}"/>
${bars}
${first === undefined ? "" : html`<text class="chart-axis" x="0" y="${HEIGHT - 4}">${hhmm(first.minute)}</text>`}
${
    last === undefined
      ? ""
      : html`<text class="chart-axis" x="${WIDTH}" y="${HEIGHT - 4}" text-anchor="end">${hhmm(last.minute)} UTC</text>`
  }
</svg>`
}
