// One workflow run: its DAG drawn as SVG (steps as boxes in columns by dependency depth,
// edges from each dependency to the step), kept live by the events of the workflow run and
// its steps (their runs carry `parent_id`); rerun and cancel.

import { api } from "../api.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { formatDuration, formatJson, formatTime } from "../format.js";

const FINISHED = new Set(["completed", "failed", "cancelled", "skipped"]);
const SVG = "http://www.w3.org/2000/svg";
const BOX = { width: 180, height: 58, column: 240, row: 84, margin: 16 };

/** An SVG element: `h` for the SVG namespace (attributes only, children appended). */
function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Each step's depth: 0 without dependencies, else one more than its deepest dependency. */
export function depths(steps) {
  const byName = new Map(steps.map((step) => [step.name, step]));
  const found = new Map();
  const depthOf = (name, seen = new Set()) => {
    if (found.has(name)) return found.get(name);
    if (seen.has(name)) return 0; // the engine refuses cycles; this only guards the drawing
    seen.add(name);
    const dependencies = (byName.get(name)?.dependencies ?? []).filter((d) => byName.has(d));
    const depth = dependencies.length ? 1 + Math.max(...dependencies.map((d) => depthOf(d, seen))) : 0;
    found.set(name, depth);
    return depth;
  };
  for (const step of steps) depthOf(step.name);
  return found;
}

/**
 * Where each step's box goes: {name: {x, y}}, and the drawing's size. Within a column, a step
 * sits near the average row of its dependencies (first column: in the workflow's order), which
 * keeps most edges short and uncrossed.
 */
function layout(steps) {
  const depth = depths(steps);
  const columns = new Map(); // depth -> its steps
  for (const step of steps) {
    const column = depth.get(step.name);
    if (!columns.has(column)) columns.set(column, []);
    columns.get(column).push(step);
  }
  const rowOf = new Map();
  const at = new Map();
  const rows = new Map(); // depth -> how many boxes
  for (const column of [...columns.keys()].sort((a, b) => a - b)) {
    const placed = columns.get(column).map((step, index) => {
      const above = (step.dependencies ?? []).filter((d) => rowOf.has(d)).map((d) => rowOf.get(d));
      return { step, weight: above.length ? above.reduce((a, b) => a + b, 0) / above.length : index };
    });
    placed.sort((a, b) => a.weight - b.weight); // stable: ties keep the workflow's order
    placed.forEach(({ step }, row) => {
      rowOf.set(step.name, row);
      at.set(step.name, { x: BOX.margin + column * BOX.column, y: BOX.margin + row * BOX.row });
    });
    rows.set(column, placed.length);
  }
  const count = Math.max(1, ...[...depth.values()].map((d) => d + 1));
  const tallest = Math.max(1, ...rows.values());
  return {
    at,
    width: BOX.margin * 2 + (count - 1) * BOX.column + BOX.width,
    height: BOX.margin * 2 + (tallest - 1) * BOX.row + BOX.height,
  };
}

/** A step's item counts, "3 completed · 1 running", for a map step's box. */
function countsText(counts) {
  return Object.entries(counts ?? {})
    .filter(([, n]) => n)
    .map(([status, n]) => `${n} ${status}`)
    .join(" · ");
}

/** Where a click on a step leads: its run, or the runs of a map step. */
function stepAddress(workflowId, step) {
  const ids = step.run_ids ?? [];
  if (!step.map && ids.length === 1) return `#/runs/${encodeURIComponent(ids[0])}`;
  if (!ids.length) return null;
  return `#/runs?parent_id=${encodeURIComponent(workflowId)}&task=${encodeURIComponent(step.task)}`;
}

function drawGraph(workflowId, steps) {
  const { at, width, height } = layout(steps);
  const edges = [];
  for (const step of steps) {
    const to = at.get(step.name);
    for (const dependency of step.dependencies ?? []) {
      const from = at.get(dependency);
      if (!from) continue;
      const x1 = from.x + BOX.width;
      const y1 = from.y + BOX.height / 2;
      const x2 = to.x;
      const y2 = to.y + BOX.height / 2;
      const bend = (x2 - x1) / 2;
      edges.push(
        s("path", {
          class: "edge",
          "data-from": dependency,
          "data-to": step.name,
          "stroke-dasharray": (step.optional ?? []).includes(dependency) ? "4 3" : null,
          d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2 - 6} ${y2}`,
          "marker-end": "url(#arrow)",
        }),
      );
    }
  }
  const boxes = steps.map((step) => {
    const { x, y } = at.get(step.name);
    const address = stepAddress(workflowId, step);
    const detail = step.map ? countsText(step.counts) || "no items yet" : step.task;
    const box = s(
      "g",
      {
        class: "step",
        "data-step": step.name,
        "data-status": step.status,
        transform: `translate(${x} ${y})`,
      },
      s("title", {}, `${step.name} (${step.task}): ${step.status}`),
      s("rect", { width: BOX.width, height: BOX.height, rx: 6 }),
      s("text", { x: 10, y: 20, class: "name" }, step.map ? `${step.name} [map]` : step.name),
      s("text", { x: 10, y: 38, class: "detail" }, detail.length > 28 ? `${detail.slice(0, 27)}…` : detail),
      s("text", { x: 10, y: 52, class: "state" }, step.status),
    );
    return address ? s("a", { href: address }, box) : box;
  });
  return s(
    "svg",
    { id: "workflow-graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "The workflow's steps and their dependencies" },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }))),
    edges,
    boxes,
  );
}

export async function render(main, { args }) {
  const id = args[0];
  let view;
  try {
    view = await api.getWorkflow(id);
  } catch (error) {
    replace(main, h("p", {}, h("a", { href: "#/workflows" }, "← Workflows")), h("h1", {}, "Workflow"), errorNotice(error));
    return;
  }

  const title = h("h1");
  const badge = h("span", { id: "workflow-status" });
  const rerun = h("button", { type: "button", id: "rerun-workflow", title: "A new run of this workflow with the same inputs; completed steps are reused" }, "Rerun");
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-workflow" }, "Cancel");
  const notice = h("div");
  const graph = h("div", { class: "graph-wrap card" });
  const facts = h("dl", { class: "facts" });
  const table = h("tbody");
  const outcome = h("pre", { class: "block", id: "workflow-result" });

  replace(
    main,
    h("p", {}, h("a", { href: "#/workflows" }, "← Workflows")),
    h("div", { class: "row page-head" }, title, badge, h("span", { class: "spacer" }), rerun, cancel),
    notice,
    graph,
    h(
      "div",
      { class: "grid-2", style: "margin-top: 20px" },
      h("section", { class: "card" }, h("h2", {}, "Workflow run"), facts, h("h3", {}, "Result"), outcome),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Steps"),
        h("p", {}, h("a", { href: `#/runs?parent_id=${encodeURIComponent(id)}`, id: "step-runs" }, "All step runs in the runs table")),
        h("div", { class: "table-wrap" }, h("table", { id: "steps-table" }, h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Task"), h("th", {}, "Status"), h("th", { class: "num" }, "Runs"))), table)),
      ),
    ),
  );

  function draw() {
    const { run, steps } = view;
    replace(title, h("span", { class: "mono" }, run.task));
    replace(badge, statusBadge(run.status));
    cancel.hidden = FINISHED.has(run.status);
    rerun.hidden = !FINISHED.has(run.status);
    replace(graph, drawGraph(id, steps));
    replace(
      facts,
      [
        ["Id", h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, class: "mono" }, run.id)],
        ["Created", formatTime(run.created_at)],
        ["Finished", formatTime(run.finished_at)],
        ["Duration", formatDuration(run.started_at && run.finished_at ? run.finished_at - run.started_at : null)],
        ["Inputs", h("code", {}, JSON.stringify(run.inputs ?? {}))],
      ].map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    );
    outcome.textContent = run.status === "completed" ? formatJson(run.result) : run.error ? `${run.error.type}: ${run.error.message}` : `The workflow is ${run.status}.`;
    replace(
      table,
      steps.map((step) => {
        const address = stepAddress(id, step);
        return h(
          "tr",
          { "data-step": step.name },
          h("td", {}, address ? h("a", { href: address }, step.name) : step.name),
          h("td", { class: "mono" }, step.task),
          h("td", {}, statusBadge(step.status), step.map ? h("span", { class: "muted" }, " ", countsText(step.counts)) : null),
          h("td", { class: "num" }, String((step.run_ids ?? []).length)),
        );
      }),
    );
  }

  async function refresh() {
    try {
      view = await api.getWorkflow(id);
      replace(notice);
      draw();
    } catch (error) {
      replace(notice, errorNotice(error));
    }
  }

  async function act(button, action) {
    button.disabled = true;
    try {
      const result = await action();
      replace(notice);
      return result;
    } catch (error) {
      replace(notice, errorNotice(error));
      return null;
    } finally {
      button.disabled = false;
    }
  }

  cancel.addEventListener("click", async () => {
    if (await act(cancel, () => api.cancelWorkflow(id))) refresh();
  });
  rerun.addEventListener("click", async () => {
    const next = await act(rerun, () => api.rerunWorkflow(id));
    if (next) window.location.hash = `#/workflows/${encodeURIComponent(next.id)}`;
  });

  // A step's start and end, or the workflow's, make one read of the workflow with its steps.
  let pending = null;
  const refreshSoon = () => {
    if (pending === null) pending = setTimeout(() => ((pending = null), refresh()), 150);
  };
  const stop = watch(
    ["run"],
    (event) => {
      if (event.line) return;
      const parent = event.run?.parent_id ?? event.data.parent_id ?? null;
      if (event.runId === id || parent === id) refreshSoon();
    },
    () => FINISHED.has(view.run.status) || refresh(),
  );
  draw();
  refresh(); // what changed between the first read and the watch
  return () => {
    stop();
    if (pending !== null) clearTimeout(pending);
  };
}
