// The runs table: newest first, filtered by task and status, a page at a time (the API's
// cursor), kept up to date by run events.

import { api } from "../api.js";
import { setQuery } from "../address.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { formatDuration, formatTime, shortId } from "../format.js";

const PAGE_SIZE = 25;
const STATUSES = ["pending", "running", "completed", "failed", "cancelled", "skipped"];
const REFRESH_MS = 300; // events in a burst make one refresh

export async function render(main, { query }) {
  // `parent_id` (from a workflow's page) keeps the table to that workflow run's steps.
  const filters = { task: query.get("task") ?? "", status: query.get("status") ?? "", parent_id: query.get("parent_id") ?? "" };
  const cursors = [query.get("cursor") || null]; // the cursor of each page seen, for "Previous"
  let next = null;

  const taskSelect = h("select", { "aria-label": "Task", name: "task" }, h("option", { value: "" }, "all tasks"));
  const statusSelect = h(
    "select",
    { "aria-label": "Status", name: "status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((status) => h("option", { value: status, selected: status === filters.status }, status)),
  );
  const body = h("tbody");
  const notice = h("div");
  const previous = h("button", { type: "button", disabled: true }, "Previous");
  const following = h("button", { type: "button", disabled: true }, "Next");
  const pageLabel = h("span", { class: "muted" });
  const parentNote = h("p", { id: "parent-filter", hidden: !filters.parent_id });
  function drawParentNote() {
    parentNote.hidden = !filters.parent_id;
    replace(
      parentNote,
      filters.parent_id
        ? [
            "Steps of workflow run ",
            h("a", { href: `#/workflows/${encodeURIComponent(filters.parent_id)}`, class: "mono" }, filters.parent_id),
            " · ",
            h("a", { href: "#", id: "clear-parent", onclick: (event) => (event.preventDefault(), (filters.parent_id = ""), refilter()) }, "all runs"),
          ]
        : null,
    );
  }
  drawParentNote();

  replace(
    main,
    h("div", { class: "row page-head" }, h("h1", {}, "Runs"), h("span", { class: "spacer" }), taskSelect, statusSelect),
    parentNote,
    notice,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "runs-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Run", "Task", "Status", "Attempts", "Created", "Duration"].map((name) =>
              h("th", { class: name === "Attempts" || name === "Duration" ? "num" : null }, name),
            ),
          ),
        ),
        body,
      ),
    ),
    h("div", { class: "pager" }, pageLabel, previous, following),
  );

  // The task filter lists registered tasks; the list is a convenience, so a failure leaves it short.
  api.listTasks().then(
    (tasks) => {
      const names = tasks.map((t) => t.name).sort();
      if (filters.task && !names.includes(filters.task)) names.unshift(filters.task);
      taskSelect.append(...names.map((name) => h("option", { value: name, selected: name === filters.task }, name)));
    },
    () => {
      if (filters.task) taskSelect.append(h("option", { value: filters.task, selected: true }, filters.task));
    },
  );

  async function load() {
    const cursor = cursors.at(-1);
    try {
      const page = await api.listRuns({ task: filters.task, status: filters.status, parent_id: filters.parent_id, cursor, limit: PAGE_SIZE });
      next = page.next;
      replace(notice);
      drawRows(page.items);
    } catch (error) {
      replace(notice, errorNotice(error));
    }
    previous.disabled = cursors.length <= 1;
    following.disabled = !next;
    pageLabel.textContent = `page ${cursors.length}`;
  }

  function drawRows(runs) {
    const empty = filters.task || filters.status || filters.parent_id ? "No runs match these filters." : "No runs yet: launch one from the task catalog.";
    replace(
      body,
      runs.length
        ? runs.map((run) =>
            h(
              "tr",
              { "data-run": run.id },
              h("td", { class: "mono" }, h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, title: run.id }, shortId(run.id))),
              h("td", { class: "mono" }, run.task),
              h("td", {}, statusBadge(run.status)),
              h("td", { class: "num" }, String(run.attempts ?? 0)),
              h("td", {}, formatTime(run.created_at)),
              h("td", { class: "num" }, formatDuration(run.started_at && run.finished_at ? run.finished_at - run.started_at : null)),
            ),
          )
        : h("tr", {}, h("td", { colspan: 6, class: "muted" }, empty)),
    );
  }

  function refilter() {
    filters.task = taskSelect.value;
    filters.status = statusSelect.value;
    cursors.length = 0;
    cursors.push(null);
    setQuery(filters);
    drawParentNote();
    load();
  }
  taskSelect.addEventListener("change", refilter);
  statusSelect.addEventListener("change", refilter);
  previous.addEventListener("click", () => {
    cursors.pop();
    load();
  });
  following.addEventListener("click", () => {
    if (!next) return;
    cursors.push(next);
    load();
  });

  let pending = null;
  const refreshSoon = () => {
    if (pending === null) pending = setTimeout(() => ((pending = null), load()), REFRESH_MS);
  };
  // A log line changes nothing in the table; any other run event may.
  const stop = watch(["run"], (event) => event.line || refreshSoon(), load);
  await load();
  return () => {
    stop();
    if (pending !== null) clearTimeout(pending);
  };
}
