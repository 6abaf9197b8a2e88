/**
 * Jobs completed and failed per minute over the last hour, as an inline SVG (no script, no
 * asset from elsewhere): one stacked bar a minute, completed below failed, scaled to the busiest
 * minute, each with a tooltip. The SVG holds bars only and stretches to the card's width; its
 * caption and axis labels are HTML around it, also carried as data attributes of the SVG so that
 * the page's refresh (which fetches `/api/throughput.svg` alone) can update them as text.
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
const HEIGHT = 120
const hhmm = (minute: number) => new Date(minute * 60_000).toISOString().slice(11, 16)

const labels = (view: ThroughputView) => {
  const completed = view.minutes.reduce((s, m) => s + m.completed, 0)
  const failed = view.minutes.reduce((s, m) => s + m.failed, 0)
  const max = Math.max(1, ...view.minutes.map((m) => m.completed + m.failed))
  const first = view.minutes[0]
  const last = view.minutes[view.minutes.length - 1]
  return {
    completed,
    failed,
    max,
    caption: `${completed} completed · ${failed} failed in the last hour${view.note === null ? "" : ` (${view.note})`}`,
    first: first === undefined ? "" : hhmm(first.minute),
    last: last === undefined ? "" : `${hhmm(last.minute)} UTC`,
    scale: `busiest minute: ${max}`
  }
}

export const throughputSvg = (view: ThroughputView): Html => {
  const l = labels(view)
  const slot = WIDTH / Math.max(1, view.minutes.length)
  const w = Math.max(1, slot - 2).toFixed(1)
  const bars = view.minutes.map((m, i) => {
    const x = (i * slot + 1).toFixed(1)
    const hc = (m.completed / l.max) * HEIGHT
    const hf = (m.failed / l.max) * HEIGHT
    return html`<g data-minute="${m.minute}" data-completed="${m.completed}" data-failed="${m.failed}"><title>${
      hhmm(m.minute)
    } UTC: ${m.completed} completed, ${m.failed} failed</title><rect class="bar-hit" x="${x}" y="0" width="${w}" height="${HEIGHT}"/>${
      m.completed > 0
        ? html`<rect class="bar-completed" x="${x}" y="${(HEIGHT - hc).toFixed(2)}" width="${w}" height="${
          hc.toFixed(2)
        }"/>`
        : ""
    }${
      m.failed > 0
        ? html`<rect class="bar-failed" x="${x}" y="${(HEIGHT - hc - hf).toFixed(2)}" width="${w}" height="${
          hf.toFixed(2)
        }"/>`
        : ""
    }</g>`
  })
  return html`<svg xmlns="http://www.w3.org/2000/svg" id="throughput-chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" preserveAspectRatio="none" role="img" aria-label="${l.caption}" data-completed="${l.completed}" data-failed="${l.failed}" data-caption="${l.caption}" data-first="${l.first}" data-last="${l.last}" data-scale="${l.scale}">
<line class="chart-base" x1="0" y1="${HEIGHT}" x2="${WIDTH}" y2="${HEIGHT}" vector-effect="non-scaling-stroke"/>
${bars}
</svg>`
}

/** The overview's card: caption, the SVG, the first and last minute and the scale. */
export const throughputCard = (view: ThroughputView): Html => {
  const l = labels(view)
  return html`<div class="card chart" id="throughput" data-src="/api/throughput.svg">
<p class="chart-caption" id="throughput-caption">${l.caption}</p>
<div class="chart-plot">${throughputSvg(view)}</div>
<div class="chart-axis"><span id="throughput-first">${l.first}</span><span id="throughput-scale">${l.scale}</span><span id="throughput-last">${l.last}</span></div>
</div>`
}
