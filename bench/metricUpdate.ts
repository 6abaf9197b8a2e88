// The CPU of one metric update on a hot path (docs/performance.md, "Metrics on and off"): a
// counter without labels and a histogram with one label, the roles' own metric objects.
//   vite-node bench/metricUpdate.ts
import { MetricLabel } from "effect"
import { runTime } from "../src/roles/metrics.js"
import { jobsCompleted } from "../src/storage/metrics.js"

const tags = [MetricLabel.make("funcname", "resize")]
const N = 1_000_000
const perUpdate = (f: (i: number) => void) => {
  const t = performance.now()
  for (let i = 0; i < N; i++) f(i)
  return ((performance.now() - t) * 1e6) / N
}
for (let round = 0; round < 3; round++) {
  const counter = perUpdate(() => jobsCompleted.unsafeUpdate(1, []))
  const histogram = perUpdate((i) => runTime.unsafeUpdate(0.001 * (i % 100), tags))
  console.log(`counter ${counter.toFixed(0)} ns, labelled histogram ${histogram.toFixed(0)} ns per update`)
}
