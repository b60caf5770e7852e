// Workers: the engines' processes recorded on the database (this server's own and any other
// process on the same database), alive or lost, with what each serves and the runs it holds.
// Workers send no events: the page asks for them every two seconds while it is open.

import { api } from "../api.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { formatAgo, formatTime } from "../format.js";

const POLL_MS = 2000;

// style.css colours run and service statuses; a worker's two states get theirs here.
const STATE_COLOUR = { alive: "var(--ok)", lost: "var(--bad)" };
const STATE_TITLE = {
  alive: "its process holds its lock",
  lost: "its process is gone: a live engine takes over the runs it held",
};

/** Alive workers first, then lost ones; each group in the API's order (oldest first). */
export function ordered(workers) {
  return [...workers].sort((a, b) => Number(a.state !== "alive") - Number(b.state !== "alive"));
}

function stateBadge(state) {
  const badge = statusBadge(state);
  if (STATE_COLOUR[state]) badge.style.color = STATE_COLOUR[state];
  badge.title = STATE_TITLE[state] ?? "";
  return badge;
}

function queuesOf(worker) {
  if (worker.queues === null || worker.queues === undefined) return h("span", { title: "every queue of the tasks it serves" }, "all");
  return worker.queues.length ? worker.queues.join(", ") : h("span", { class: "muted" }, "none");
}

function concurrencyOf(worker) {
  if (worker.concurrency === null || worker.concurrency === undefined) return h("span", { class: "muted" }, "none — observes only");
  return String(worker.concurrency);
}

function row(worker) {
  return h(
    "tr",
    { "data-worker": worker.id, "data-state": worker.state },
    h(
      "td",
      { class: "wrap" },
      worker.name ? [h("strong", {}, worker.name), h("span", { class: "desc mono" }, worker.id)] : h("span", { class: "mono" }, worker.id),
    ),
    h("td", { class: "state" }, stateBadge(worker.state)),
    h("td", { class: "host" }, worker.hostname),
    h("td", { class: "num pid" }, String(worker.pid)),
    h("td", { class: "wrap queues" }, queuesOf(worker)),
    h("td", { class: "concurrency" }, concurrencyOf(worker)),
    h("td", { class: "num holds" }, String(worker.holds ?? 0)),
    h("td", { class: "heartbeat", title: formatTime(worker.heartbeat_at) }, formatAgo(worker.heartbeat_at)),
    h("td", {}, formatTime(worker.started_at)),
  );
}

export async function render(main) {
  const notice = h("div");
  const body = h("tbody");
  let stopped = false;
  let timer = null;

  replace(
    main,
    h("h1", {}, "Workers"),
    h("p", { class: "muted" }, "The engines' processes recorded on this database: alive while the process holds its lock, lost once it is gone."),
    notice,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "workers-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Worker"),
            h("th", {}, "State"),
            h("th", {}, "Host"),
            h("th", { class: "num" }, "PID"),
            h("th", {}, "Queues"),
            h("th", {}, "Concurrency"),
            h("th", { class: "num" }, "Runs held"),
            h("th", {}, "Last heartbeat"),
            h("th", {}, "Started"),
          ),
        ),
        body,
      ),
    ),
  );

  async function load() {
    try {
      const workers = ordered(await api.listWorkers());
      if (stopped) return;
      replace(notice);
      replace(body, workers.length ? workers.map(row) : h("tr", {}, h("td", { colspan: 9, class: "muted", id: "workers-empty" }, "No workers are recorded on this database.")));
    } catch (error) {
      if (!stopped) replace(notice, errorNotice(error));
    }
  }

  async function poll() {
    await load();
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  await poll();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  };
}
