// Charts drawn as plain SVG, the way the workflow graph is: a stacked bar chart over time
// and the scales it needs. Colours come from style.css (classes and `data-series`), so a
// chart follows the light and dark themes; every bar carries its numbers as data
// attributes and a <title> (the browser's tooltip), and the SVG a title and a description.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element: `h` for the SVG namespace (attributes only, children appended). */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * A count axis from 0 to at least `max`: a step of 1, 2 or 5 times a power of ten (never
 * below 1, counts are whole), about `count` steps. Returns {top, ticks}.
 */
export function countTicks(max, count = 4) {
  if (!(max > 0)) return { top: 1, ticks: [0, 1] };
  const rough = max / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= rough));
  const top = Math.ceil(max / step) * step;
  const ticks = [];
  for (let value = 0; value <= top; value += step) ticks.push(value);
  return { top, ticks };
}

// Tick spacings a time axis picks from: the first that leaves room for each label.
const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const DAY = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const DAY_AND_CLOCK = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

/** Seconds to add to an epoch time to get local wall-clock seconds at that moment. */
function localOffset(seconds) {
  return -new Date(seconds * 1000).getTimezoneOffset() * 60;
}

/**
 * Ticks of a time axis from `from` to `to` (epoch seconds) with at most `most` of them, on
 * round local times (every 10 minutes, every 3 hours, at midnight): [{at, label}]. A tick at
 * local midnight is labelled with the day, the others with the clock time.
 */
export function timeTicks(from, to, most) {
  const span = Math.max(1, to - from);
  const step = TIME_STEPS.find((candidate) => span / candidate <= Math.max(1, most)) ?? TIME_STEPS.at(-1);
  const ticks = [];
  let at = Math.ceil((from + localOffset(from)) / step) * step - localOffset(from);
  for (; at <= to && ticks.length <= most; at += step) {
    const wall = at + localOffset(at);
    const midnight = wall % 86400 === 0;
    ticks.push({ at, label: midnight || step >= 86400 ? DAY.format(new Date(at * 1000)) : CLOCK.format(new Date(at * 1000)) });
  }
  return ticks;
}

/** A bucket's time span in words: "14:03–14:04", with the day when the chart spans days. */
export function bucketSpan(start, seconds, withDay) {
  const first = (withDay ? DAY_AND_CLOCK : CLOCK).format(new Date(start * 1000));
  return `${first}–${CLOCK.format(new Date((start + seconds) * 1000))}`;
}

/** A count made short for an axis label: 950, 1.2k, 34k, 1.5M. */
export function shortCount(value) {
  if (value < 1000) return String(value);
  if (value < 1_000_000) return `${+(value / 1000).toFixed(value < 10_000 ? 1 : 0)}k`;
  return `${+(value / 1_000_000).toFixed(1)}M`;
}

let charts = 0; // ids of each chart's title and description, unique in the page

/**
 * A stacked bar chart over time.
 *
 * `buckets`: [{start, <series key>: count, ...}], oldest first, each `bucketSeconds` long;
 * `series`: [{key, label}], bottom first (their colours: `.chart [data-series=key]` in
 * style.css); `width`, `height` in pixels; `title` and `description` for assistive
 * technology; `id` for the <svg>. Each bar is a <g class="bar"> with `data-start`,
 * `data-total` and one `data-<key>` per series, and a <title> saying its time and counts.
 */
export function stackedBarChart({ buckets, series, bucketSeconds, width, height, title, description, id = null }) {
  const number = ++charts;
  const margin = { top: 10, right: 8, bottom: 24, left: 40 };
  const plot = { width: Math.max(40, width - margin.left - margin.right), height: Math.max(40, height - margin.top - margin.bottom) };
  const from = buckets.length ? buckets[0].start : 0;
  const to = buckets.length ? buckets.at(-1).start + bucketSeconds : bucketSeconds;
  const span = Math.max(1, to - from);
  const withDay = span > 86400;
  const totalOf = (bucket) => series.reduce((sum, { key }) => sum + (bucket[key] ?? 0), 0);
  const { top, ticks } = countTicks(Math.max(0, ...buckets.map(totalOf)));
  const x = (seconds) => margin.left + ((seconds - from) / span) * plot.width;
  const y = (count) => margin.top + plot.height - (count / top) * plot.height;

  const slot = (bucketSeconds / span) * plot.width;
  const barWidth = slot >= 6 ? slot * 0.78 : Math.max(1, slot - 0.6);
  const bars = buckets.map((bucket) => {
    const total = totalOf(bucket);
    const left = x(bucket.start) + (slot - barWidth) / 2;
    let base = 0;
    const segments = [];
    for (const { key } of series) {
      const count = bucket[key] ?? 0;
      if (count > 0) {
        segments.push(svg("rect", { class: "segment", "data-series": key, x: left, width: barWidth, y: y(base + count), height: y(base) - y(base + count) }));
      }
      base += count;
    }
    const counts = series.map(({ key, label }) => `${bucket[key] ?? 0} ${label}`).join(", ");
    const data = Object.fromEntries(series.map(({ key }) => [`data-${key}`, bucket[key] ?? 0]));
    return svg(
      "g",
      { class: "bar", "data-start": bucket.start, "data-total": total, ...data },
      svg("title", {}, `${bucketSpan(bucket.start, bucketSeconds, withDay)}: ${total ? counts : "none"}`),
      // The whole column answers the pointer, so a short bar's tooltip is easy to reach.
      svg("rect", { class: "hit", x: x(bucket.start), width: slot, y: margin.top, height: plot.height }),
      segments,
    );
  });

  const countAxis = ticks.map((value) =>
    svg(
      "g",
      { class: "tick" },
      svg("line", { class: "grid", x1: margin.left, x2: margin.left + plot.width, y1: y(value), y2: y(value) }),
      svg("text", { class: "tick-label", x: margin.left - 6, y: y(value), "text-anchor": "end", "dominant-baseline": "middle" }, shortCount(value)),
    ),
  );
  // A label centred on a tick near the right end would be cut off by the SVG's edge.
  const timeAxis = timeTicks(from, to, Math.floor(plot.width / 72))
    .filter(({ at }) => x(at) + 28 <= width)
    .map(({ at, label }) =>
    svg(
      "g",
      { class: "tick", "data-time": at },
      svg("line", { class: "axis", x1: x(at), x2: x(at), y1: margin.top + plot.height, y2: margin.top + plot.height + 4 }),
      svg("text", { class: "tick-label", x: x(at), y: margin.top + plot.height + 16, "text-anchor": "middle" }, label),
    ),
  );
  const empty = buckets.every((bucket) => totalOf(bucket) === 0);
  return svg(
    "svg",
    {
      class: "chart",
      id,
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `chart-${number}-title chart-${number}-desc`,
      "data-bucket-seconds": bucketSeconds,
    },
    svg("title", { id: `chart-${number}-title` }, title),
    svg("desc", { id: `chart-${number}-desc` }, description),
    countAxis,
    svg("line", { class: "axis", x1: margin.left, x2: margin.left + plot.width, y1: margin.top + plot.height, y2: margin.top + plot.height }),
    timeAxis,
    bars,
    empty ? svg("text", { class: "empty", x: margin.left + plot.width / 2, y: margin.top + plot.height / 2, "text-anchor": "middle" }, "Nothing finished in this window") : null,
  );
}

/** The key of a chart's colours, as HTML (so it reads as text): [swatch] label, per series. */
export function legend(series) {
  return h(
    "ul",
    { class: "legend" },
    series.map(({ key, label }) => h("li", {}, h("span", { class: "swatch", dataset: { series: key }, "aria-hidden": "true" }), label)),
  );
}
