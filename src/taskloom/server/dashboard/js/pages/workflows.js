// Workflow runs (runs whose task is `workflow:<name>`), newest first, kept live by run
// events; and a form that submits a workflow as YAML or JSON text.

import { api } from "../api.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { formatDuration, formatTime, shortId } from "../format.js";

const PREFIX = "workflow:";
// The API filters runs by exact task name, not by prefix: the page reads the most recent
// runs, a few pages of them, and keeps the workflow runs among them.
const SCAN_PAGE = 500;
const SCAN_PAGES = 4;
const REFRESH_MS = 300;

async function recentWorkflowRuns() {
  const found = [];
  let cursor = null;
  for (let page = 0; page < SCAN_PAGES; page++) {
    const { items, next } = await api.listRuns({ limit: SCAN_PAGE, cursor });
    found.push(...items.filter((run) => String(run.task).startsWith(PREFIX)));
    if (!next) return { runs: found, complete: true };
    cursor = next;
  }
  return { runs: found, complete: false };
}

function launchForm() {
  const text = h("textarea", { id: "workflow-text", name: "workflow", rows: 12, spellcheck: false, placeholder: "name: chain\nsteps:\n  first:\n    task: adder\n    inputs: {a: 1, b: 2}" });
  const file = h("input", { type: "file", id: "workflow-file", accept: ".yaml,.yml,.json" });
  const inputs = h("textarea", { id: "workflow-inputs", name: "inputs", rows: 3, spellcheck: false, placeholder: "{}" });
  const errors = h("ul", { class: "form-error", id: "workflow-errors", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Launch workflow");

  file.addEventListener("change", async () => {
    const [chosen] = file.files;
    if (chosen) text.value = await chosen.text();
  });

  async function send(event) {
    event.preventDefault();
    replace(errors);
    let values;
    try {
      values = inputs.value.trim() ? JSON.parse(inputs.value) : undefined;
    } catch (error) {
      replace(errors, h("li", {}, `inputs: not JSON (${error.message})`));
      return;
    }
    if (!text.value.trim()) {
      replace(errors, h("li", {}, "workflow: paste a workflow's YAML or JSON, or choose its file"));
      return;
    }
    submit.disabled = true;
    try {
      const run = await api.submitWorkflow(text.value, values);
      window.location.hash = `#/workflows/${encodeURIComponent(run.id)}`;
    } catch (error) {
      // A 422 lists one entry per step at fault (field `steps.<step>...`).
      const entries = error.fields?.length ? error.fields.map((e) => `${e.field}: ${e.message}`) : [error.message];
      replace(errors, entries.map((entry) => h("li", {}, entry)));
    } finally {
      submit.disabled = false;
    }
  }

  return h(
    "details",
    { class: "card", id: "launch-workflow", style: "margin-bottom: 20px" },
    h("summary", {}, h("strong", {}, "Launch a workflow")),
    h(
      "form",
      { id: "workflow-form", onsubmit: send, novalidate: true, style: "margin-top: 12px" },
      h(
        "p",
        { class: "muted" },
        "The form ",
        h("code", {}, "taskloom workflow run FILE"),
        " reads, as YAML or JSON; each step names a task this server serves (see Tasks).",
      ),
      h("div", { class: "field" }, h("label", { for: "workflow-file" }, "From a file"), file),
      h("div", { class: "field" }, h("label", { for: "workflow-text" }, "Workflow"), text),
      h("div", { class: "field" }, h("label", { for: "workflow-inputs" }, "Inputs (JSON, optional)"), inputs),
      errors,
      h("div", { class: "form-actions" }, submit),
    ),
  );
}

export async function render(main) {
  const body = h("tbody");
  const notice = h("div");
  const scope = h("p", { class: "muted", id: "workflows-scope" });

  replace(
    main,
    h("div", { class: "row page-head" }, h("h1", {}, "Workflows")),
    launchForm(),
    notice,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "workflows-table" },
        h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Created", "Duration"].map((name) => h("th", { class: name === "Duration" ? "num" : null }, name)))),
        body,
      ),
    ),
    scope,
  );

  async function load() {
    try {
      const { runs, complete } = await recentWorkflowRuns();
      replace(notice);
      scope.textContent = complete ? "" : `Workflow runs among the ${SCAN_PAGE * SCAN_PAGES} most recent runs.`;
      replace(
        body,
        runs.length
          ? runs.map((run) =>
              h(
                "tr",
                { "data-run": run.id },
                h("td", { class: "mono" }, h("a", { href: `#/workflows/${encodeURIComponent(run.id)}`, title: run.id }, shortId(run.id))),
                h("td", { class: "mono" }, run.task.slice(PREFIX.length)),
                h("td", {}, statusBadge(run.status)),
                h("td", {}, formatTime(run.created_at)),
                h("td", { class: "num" }, formatDuration(run.started_at && run.finished_at ? run.finished_at - run.started_at : null)),
              ),
            )
          : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No workflow runs yet: launch one above.")),
      );
    } catch (error) {
      replace(notice, errorNotice(error));
    }
  }

  let pending = null;
  const refreshSoon = () => {
    if (pending === null) pending = setTimeout(() => ((pending = null), load()), REFRESH_MS);
  };
  const stop = watch(["run"], (event) => event.run && String(event.run.task).startsWith(PREFIX) && refreshSoon(), load);
  await load();
  return () => {
    stop();
    if (pending !== null) clearTimeout(pending);
  };
}
