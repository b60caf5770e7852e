// Overview, the landing page: what happened in a window of time (runs per bucket by
// status, totals and failure rate, durations per task, the slowest and most failing
// tasks), what is pending and running now, and the workers and services at a glance.
//
// Everything about runs comes from one aggregate read, GET /api/stats?window=...; it is
// read again when run events arrive (at most once every STATS_THROTTLE_MS, however many
// arrive) and every STATS_EVERY_MS anyway. Workers send no events: they are asked for
// every WORKERS_EVERY_MS. Services are read again on their events.

import { api } from "../api.js";
import { setQuery } from "../address.js";
import { bucketSpan, legend, stackedBarChart } from "../charts.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { formatDuration, formatTime } from "../format.js";

/** The windows `GET /api/stats` accepts, with what the page calls them. */
export const WINDOWS = [
  ["15m", "15 minutes"],
  ["1h", "hour"],
  ["6h", "6 hours"],
  ["1d", "day"],
  ["7d", "7 days"],
];
const DEFAULT_WINDOW = "1h";
const STATS_THROTTLE_MS = 1500;
const STATS_EVERY_MS = 15_000;
const WORKERS_EVERY_MS = 3000;
const SERVICES_THROTTLE_MS = 1000;
const TASK_ROWS = 12; // rows of the durations table; the rest are counted under it
const TOP = 5; // slowest and most failing tasks

const SERIES = [
  { key: "completed", label: "completed" },
  { key: "failed", label: "failed" },
  { key: "cancelled", label: "cancelled" },
];

/** A bucket's length in words: "minute", "5 minutes", "hour". */
export function bucketWords(seconds) {
  if (seconds % 3600 === 0) return seconds === 3600 ? "hour" : `${seconds / 3600} hours`;
  if (seconds % 60 === 0) return seconds === 60 ? "minute" : `${seconds / 60} minutes`;
  return `${seconds} seconds`;
}

/** A share as a percentage with one decimal: "3.2 %"; "—" when nothing finished. */
export function percent(rate, finished) {
  return finished ? `${(rate * 100).toFixed(1)} %` : "—";
}

/** The tasks with the highest p95 duration, slowest first. */
export function slowest(tasks, count = TOP) {
  return tasks
    .filter((task) => task.p95_seconds !== null && task.p95_seconds !== undefined)
    .sort((a, b) => b.p95_seconds - a.p95_seconds || (b.p50_seconds ?? 0) - (a.p50_seconds ?? 0))
    .slice(0, count);
}

/** The tasks with the most failed runs (then the highest failure rate), leaving out those without any. */
export function mostFailing(tasks, count = TOP) {
  return tasks
    .filter((task) => task.failed > 0)
    .sort((a, b) => b.failed - a.failed || b.failure_rate - a.failure_rate)
    .slice(0, count);
}

/**
 * `call()` at most once every `ms`, however often the returned function is called: a call
 * inside the interval is made once it has passed, a call while one runs once it has ended.
 * `now()` calls at once (and counts as the last call); `cancel()` drops what is waiting.
 */
export function throttled(call, ms) {
  let last = -Infinity;
  let timer = null;
  let running = 0;
  let again = false;
  const run = async () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    running++;
    last = Date.now();
    try {
      await call();
    } finally {
      running--;
      if (again && !running) {
        again = false;
        request();
      }
    }
  };
  const request = () => {
    if (running) again = true;
    else if (timer === null) timer = setTimeout(run, Math.max(0, last + ms - Date.now()));
  };
  request.now = run;
  request.cancel = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    again = false;
  };
  return request;
}

function tile(key, label, value, href = null, title = null) {
  const parts = [h("span", { class: "tile-value" }, value), h("span", { class: "tile-label" }, label)];
  return href
    ? h("a", { class: "tile", href, dataset: { total: key }, title }, parts)
    : h("div", { class: "tile", dataset: { total: key }, title }, parts);
}

const runsOf = (task, status = null) =>
  `#/runs?task=${encodeURIComponent(task)}${status ? `&status=${encodeURIComponent(status)}` : ""}`;

export async function render(main, { query }) {
  let chosen = WINDOWS.some(([key]) => key === query.get("window")) ? query.get("window") : DEFAULT_WINDOW;
  let stats = null;
  let stopped = false;
  let asked = 0; // the latest stats read: an older answer (another window) is not drawn
  let workersTimer = null;
  let drawnWidth = null;

  const buttons = WINDOWS.map(([key, words]) =>
    h("button", { type: "button", dataset: { window: key }, "aria-pressed": String(key === chosen), title: `the last ${words}`, onclick: () => choose(key) }, key),
  );
  const updated = h("span", { class: "muted", id: "overview-updated" });
  const notice = h("div");
  const totals = h("div", { class: "tiles", id: "overview-totals", "aria-live": "polite" });
  const now = h("div", { class: "tiles", id: "overview-now" });
  const chartTitle = h("h2");
  const chartHolder = h("div", { class: "chart-wrap", id: "overview-chart" });
  const bucketRows = h("tbody");
  const durations = h("tbody");
  const durationsMore = h("p", { class: "muted", id: "overview-more-tasks" });
  const slowList = h("ol", { class: "ranked", id: "overview-slowest" });
  const failingList = h("ol", { class: "ranked", id: "overview-failing" });
  const workers = h("div", { id: "overview-workers" });
  const services = h("div", { id: "overview-services" });

  replace(
    main,
    h(
      "div",
      { class: "row page-head" },
      h("h1", {}, "Overview"),
      h("div", { class: "segmented", role: "group", "aria-label": "Window" }, buttons),
      h("span", { class: "spacer" }),
      updated,
    ),
    notice,
    h("div", { class: "overview-counts" }, h("section", { "aria-label": "Finished in the window" }, totals), h("section", { "aria-label": "Now" }, now)),
    h(
      "section",
      { class: "card", id: "overview-runs" },
      h("div", { class: "row card-head" }, chartTitle, h("span", { class: "spacer" }), legend(SERIES)),
      chartHolder,
      h(
        "details",
        { class: "chart-numbers" },
        h("summary", { class: "muted" }, "The bars as numbers"),
        h("div", { class: "table-wrap" }, h("table", { id: "overview-buckets" }, h("thead", {}, h("tr", {}, h("th", {}, "Time"), SERIES.map(({ label }) => h("th", { class: "num" }, label)))), bucketRows)),
      ),
    ),
    h(
      "div",
      { class: "grid-2 overview-grid" },
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Duration per task"),
        h("p", { class: "muted hint" }, "From a run's first start to its end. The bar is p95, its darker part p50, against the slowest p95 here."),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { id: "overview-durations" },
            h("thead", {}, h("tr", {}, h("th", {}, "Task"), h("th", { class: "num" }, "Runs"), h("th", { class: "num failed" }, "Failed"), h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p95"), h("th", { class: "bar-cell" }, h("span", { class: "visually-hidden" }, "p50 and p95 as bars")))),
            durations,
          ),
        ),
        durationsMore,
      ),
      h(
        "div",
        { class: "stack" },
        h("section", { class: "card" }, h("h2", {}, "Slowest tasks"), h("p", { class: "muted hint" }, "by p95 duration"), slowList),
        h("section", { class: "card" }, h("h2", {}, "Most failing tasks"), h("p", { class: "muted hint" }, "by failed runs"), failingList),
      ),
    ),
    h(
      "div",
      { class: "grid-2 overview-grid" },
      h("section", { class: "card" }, h("div", { class: "row card-head" }, h("h2", {}, "Workers"), h("span", { class: "spacer" }), h("a", { href: "#/workers" }, "All workers")), workers),
      h("section", { class: "card" }, h("div", { class: "row card-head" }, h("h2", {}, "Services"), h("span", { class: "spacer" }), h("a", { href: "#/services" }, "All services")), services),
    ),
  );

  const windowWords = () => WINDOWS.find(([key]) => key === chosen)[1];

  function drawChart() {
    if (!stats) return;
    drawnWidth = Math.floor(chartHolder.clientWidth);
    const width = Math.max(260, drawnWidth);
    const { totals: sum } = stats;
    const busiest = stats.buckets.reduce((best, bucket) => {
      const total = bucket.completed + bucket.failed + bucket.cancelled;
      return total > best.total ? { total, start: bucket.start } : best;
    }, { total: 0, start: null });
    const busiestText = busiest.start === null ? "" : ` The busiest ${bucketWords(stats.bucket_seconds)}, ${bucketSpan(busiest.start, stats.bucket_seconds, true)}, had ${busiest.total}.`;
    replace(
      chartHolder,
      stackedBarChart({
        id: "overview-runs-chart",
        buckets: stats.buckets,
        series: SERIES,
        bucketSeconds: stats.bucket_seconds,
        width,
        height: width < 520 ? 180 : 230,
        title: `Runs finished per ${bucketWords(stats.bucket_seconds)} in the last ${windowWords()}, by status`,
        description: `${sum.finished} runs finished: ${sum.completed} completed, ${sum.failed} failed, ${sum.cancelled} cancelled, in ${stats.buckets.length} bars of a ${bucketWords(stats.bucket_seconds)}.${busiestText}`,
      }),
    );
  }

  function drawStats() {
    const { totals: sum } = stats;
    replace(chartTitle, `Runs per ${bucketWords(stats.bucket_seconds)} by status`);
    replace(
      totals,
      tile("finished", "finished", String(sum.finished)),
      tile("completed", "completed", String(sum.completed), "#/runs?status=completed"),
      tile("failed", "failed", String(sum.failed), "#/runs?status=failed"),
      tile("cancelled", "cancelled", String(sum.cancelled), "#/runs?status=cancelled"),
      tile("failure-rate", "failure rate", percent(stats.failure_rate, sum.finished), null, "failed runs among the finished ones"),
    );
    replace(
      now,
      tile("pending", "pending now", String(stats.pending), "#/runs?status=pending"),
      tile("running", "running now", String(stats.running), "#/runs?status=running"),
    );
    replace(updated, `the last ${windowWords()}, as of ${formatTime(stats.until)}`);
    drawChart();
    replace(
      bucketRows,
      stats.buckets
        .filter((bucket) => bucket.completed + bucket.failed + bucket.cancelled > 0)
        .map((bucket) => h("tr", {}, h("td", {}, bucketSpan(bucket.start, stats.bucket_seconds, true)), SERIES.map(({ key }) => h("td", { class: "num" }, String(bucket[key]))))),
    );
    if (!bucketRows.children.length) replace(bucketRows, h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No run finished in this window.")));
    drawTasks(stats.tasks);
  }

  function drawTasks(tasks) {
    const longest = Math.max(0, ...tasks.map((task) => task.p95_seconds ?? 0));
    const share = (seconds) => (longest > 0 && seconds ? `${Math.max(1, (seconds / longest) * 100).toFixed(1)}%` : "0");
    replace(
      durations,
      tasks.length
        ? tasks.slice(0, TASK_ROWS).map((task) =>
            h(
              "tr",
              { dataset: { task: task.task, p50: task.p50_seconds ?? "", p95: task.p95_seconds ?? "" } },
              h("td", { class: "wrap" }, h("a", { href: runsOf(task.task), class: "mono" }, task.task)),
              h("td", { class: "num runs" }, String(task.finished)),
              h("td", { class: "num failed" }, String(task.failed)),
              h("td", { class: "num p50" }, formatDuration(task.p50_seconds)),
              h("td", { class: "num p95" }, formatDuration(task.p95_seconds)),
              h(
                "td",
                { class: "bar-cell" },
                h(
                  "div",
                  { class: "duration-bar", title: `p50 ${formatDuration(task.p50_seconds)} · p95 ${formatDuration(task.p95_seconds)} · longest ${formatDuration(task.max_seconds)}`, "aria-hidden": "true" },
                  h("span", { class: "p95", style: `width: ${share(task.p95_seconds)}` }),
                  h("span", { class: "p50", style: `width: ${share(task.p50_seconds)}` }),
                ),
              ),
            ),
          )
        : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No run finished in this window.")),
    );
    const more = tasks.length - TASK_ROWS;
    durationsMore.hidden = more <= 0;
    replace(durationsMore, more > 0 ? `and ${more} more task${more === 1 ? "" : "s"} with fewer runs` : "");

    const slow = slowest(tasks);
    replace(
      slowList,
      slow.length
        ? slow.map((task) =>
            h("li", { dataset: { task: task.task } }, h("a", { href: runsOf(task.task), class: "mono" }, task.task), h("span", { class: "value" }, formatDuration(task.p95_seconds)), h("span", { class: "muted detail" }, `p50 ${formatDuration(task.p50_seconds)}, longest ${formatDuration(task.max_seconds)}`)),
          )
        : h("li", { class: "muted empty" }, "No run finished in this window."),
    );
    const failing = mostFailing(tasks);
    replace(
      failingList,
      failing.length
        ? failing.map((task) =>
            h("li", { dataset: { task: task.task } }, h("a", { href: runsOf(task.task, "failed"), class: "mono" }, task.task), h("span", { class: "value" }, `${task.failed} failed`), h("span", { class: "muted detail" }, `of ${task.finished} (${percent(task.failure_rate, task.finished)})`)),
          )
        : h("li", { class: "muted empty" }, "No run failed in this window."),
    );
  }

  async function loadStats() {
    const mine = ++asked;
    const wanted = chosen;
    try {
      const answer = await api.getStats(wanted);
      if (stopped || mine !== asked) return;
      stats = answer;
      replace(notice);
      drawStats();
    } catch (error) {
      if (!stopped && mine === asked) replace(notice, errorNotice(error));
    }
  }

  function drawWorkers(list) {
    const alive = list.filter((worker) => worker.state === "alive");
    const lost = list.length - alive.length;
    replace(
      workers,
      h("p", { class: "glance" }, h("strong", { "data-count": "alive" }, String(alive.length)), " alive", lost ? [" · ", h("span", { "data-count": "lost" }, String(lost)), " lost"] : null),
      alive.length
        ? h(
            "ul",
            { class: "glance-list" },
            alive.slice(0, 8).map((worker) =>
              h("li", { dataset: { worker: worker.id } }, h("a", { href: "#/workers" }, worker.name || worker.id), h("span", { class: "muted" }, ` on ${worker.hostname}, holds ${worker.holds ?? 0} run${worker.holds === 1 ? "" : "s"}`)),
            ),
          )
        : h("p", { class: "muted" }, "No worker is alive: runs wait until one starts."),
    );
  }

  function drawServices(list) {
    const byState = new Map();
    for (const service of list) byState.set(service.state, (byState.get(service.state) ?? 0) + 1);
    replace(
      services,
      list.length
        ? [
            h("p", { class: "glance" }, [...byState].map(([state, count]) => h("span", { class: "state-count", dataset: { state } }, h("strong", {}, String(count)), " ", statusBadge(state)))),
            h(
              "ul",
              { class: "glance-list" },
              list.slice(0, 10).map((service) => h("li", { dataset: { service: service.name } }, h("a", { href: `#/services?service=${encodeURIComponent(service.name)}` }, service.name), " ", statusBadge(service.state))),
            ),
            list.length > 10 ? h("p", { class: "muted" }, `and ${list.length - 10} more`) : null,
          ]
        : h("p", { class: "muted" }, "No services are defined."),
    );
  }

  async function loadWorkers() {
    try {
      const list = await api.listWorkers();
      if (!stopped) drawWorkers(list);
    } catch (error) {
      if (!stopped) replace(workers, errorNotice(error));
    }
  }

  async function loadServices() {
    try {
      const list = await api.listServices();
      if (!stopped) drawServices(list);
    } catch (error) {
      if (!stopped) replace(services, errorNotice(error));
    }
  }

  const statsSoon = throttled(loadStats, STATS_THROTTLE_MS);
  const servicesSoon = throttled(loadServices, SERVICES_THROTTLE_MS);

  function choose(key) {
    if (key === chosen) return;
    chosen = key;
    setQuery({ window: key === DEFAULT_WINDOW ? null : key });
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.window === key));
    statsSoon.cancel();
    statsSoon.now();
  }

  async function pollWorkers() {
    await loadWorkers();
    if (!stopped) workersTimer = setTimeout(pollWorkers, WORKERS_EVERY_MS);
  }

  // A log line or a progress report changes no count; a run submitted, started or ended does.
  const stopRuns = watch(["run"], (event) => event.line || event.data.kind === "progress" || statsSoon(), statsSoon);
  const stopServices = watch(["service"], servicesSoon, null);
  const every = setInterval(() => (statsSoon(), servicesSoon()), STATS_EVERY_MS);
  // Drawn again at the new width (not scaled), so labels keep their size on a narrow screen.
  const resized = new ResizeObserver(() => Math.floor(chartHolder.clientWidth) !== drawnWidth && drawChart());

  await Promise.all([statsSoon.now(), pollWorkers(), loadServices()]);
  resized.observe(chartHolder);
  return () => {
    stopped = true;
    stopRuns();
    stopServices();
    clearInterval(every);
    if (workersTimer !== null) clearTimeout(workersTimer);
    statsSoon.cancel();
    servicesSoon.cancel();
    resized.disconnect();
  };
}
