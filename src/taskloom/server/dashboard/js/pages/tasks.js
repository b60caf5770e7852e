// The task catalog: search the registered tasks, read one's inputs, launch a run from a form
// generated from its input schema.

import { ApiError, api } from "../api.js";
import { setQuery } from "../address.js";
import { errorNotice, h, replace } from "../dom.js";
import { schemaForm } from "../form.js";
import { formatJson } from "../format.js";

function matches(task, words) {
  const text = [task.name, task.label, task.description, ...(task.tags ?? [])].join(" ").toLowerCase();
  return words.every((word) => text.includes(word));
}

export async function render(main, { args, query }) {
  const selected = args[0] ?? null;
  let tasks;
  try {
    tasks = await api.listTasks();
  } catch (error) {
    replace(main, h("h1", {}, "Tasks"), errorNotice(error));
    return;
  }
  tasks.sort((a, b) => a.name.localeCompare(b.name));

  const search = h("input", {
    type: "search",
    placeholder: "Search tasks",
    "aria-label": "Search tasks",
    value: query.get("q") ?? "",
    style: "width: 100%; margin-bottom: 8px",
  });
  const list = h("ul", { class: "task-list", "aria-label": "Tasks" });
  const detail = h("div", { class: "card", id: "task-detail" });

  function drawList() {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = tasks.filter((task) => matches(task, words));
    replace(
      list,
      shown.length
        ? shown.map((task) =>
            h(
              "li",
              {},
              h(
                "a",
                {
                  href: `#/tasks/${encodeURIComponent(task.name)}${search.value ? `?q=${encodeURIComponent(search.value)}` : ""}`,
                  "aria-current": task.name === selected ? "true" : null,
                  "data-task": task.name,
                },
                h("span", { class: "name" }, task.name),
                task.description ? h("span", { class: "desc" }, task.description) : null,
              ),
            ),
          )
        : h("li", { class: "muted" }, tasks.length ? "No task matches." : "No tasks are registered."),
    );
  }
  search.addEventListener("input", () => {
    setQuery({ q: search.value });
    drawList();
  });
  drawList();

  const task = tasks.find((t) => t.name === selected);
  if (selected && !task) {
    replace(detail, errorNotice(new Error(`No task is named ${selected}.`)));
  } else if (!task) {
    replace(detail, h("p", { class: "muted" }, `${tasks.length} task${tasks.length === 1 ? "" : "s"}. Pick one to see its inputs and launch a run.`));
  } else {
    drawTask(detail, task);
  }

  replace(
    main,
    h("h1", {}, "Tasks"),
    h("div", { class: "split" }, h("div", {}, search, list), detail),
  );
  if (!selected) search.focus();
}

function drawTask(detail, task) {
  const fields = h("div", { class: "fields" });
  // An input schema may come only with the task itself (GET /api/tasks/{name}).
  const form = schemaForm(fields, task.input_schema ?? {}, { prefix: "input" });
  const launch = h("button", { type: "submit", class: "primary" }, "Launch run");
  const formError = h("p", { class: "form-error", role: "alert", id: "launch-error" });
  const options = runOptions();

  async function submit(event) {
    event.preventDefault();
    form.clearErrors();
    options.clearErrors();
    formError.textContent = "";
    const { ok, value } = form.values();
    if (!ok) return;
    launch.disabled = true;
    try {
      const run = await api.submitRun(task.name, value, options.values());
      window.location.hash = `#/runs/${encodeURIComponent(run.id)}`;
    } catch (error) {
      if (error instanceof ApiError && error.status === 422 && error.fields.length) {
        form.setErrors(options.takeErrors(error.fields));
      } else {
        formError.textContent = error.message;
      }
    } finally {
      launch.disabled = false;
    }
  }

  const output = task.output_schema && Object.keys(task.output_schema).length ? task.output_schema : null;
  replace(
    detail,
    h("div", { class: "row" }, h("h2", { style: "margin: 0" }, task.label && task.label !== task.name ? task.label : task.name), h("span", { class: "spacer" }), h("a", { href: `#/runs?task=${encodeURIComponent(task.name)}` }, "Runs of this task")),
    task.label && task.label !== task.name ? h("p", { class: "muted mono" }, task.name) : null,
    task.description ? h("p", {}, task.description) : null,
    h("form", { id: "launch-form", novalidate: true, onsubmit: submit }, fields, options.element, h("div", { class: "form-actions" }, launch, formError)),
    output ? h("details", {}, h("summary", { class: "muted" }, "Output schema"), h("pre", { class: "block" }, formatJson(output))) : null,
  );
}

/**
 * The options of a run beside its inputs: priority and idempotency key, folded away.
 * `takeErrors` shows the server's messages about them and returns the others.
 */
function runOptions() {
  const specs = [
    ["priority", "Priority", "integer; higher starts first (default: the task's)", "numeric"],
    ["idempotency_key", "Idempotency key", "a second launch with the same key returns the first run", null],
  ];
  const parts = new Map();
  const element = h(
    "details",
    { class: "run-options", id: "run-options" },
    h("summary", { class: "muted" }, "Run options"),
    specs.map(([name, label, hint, inputmode]) => {
      const id = `option-${name}`;
      const input = h("input", { id, name, type: "text", inputmode, autocomplete: "off", "aria-describedby": `${id}-hint ${id}-message` });
      const message = h("span", { class: "message", id: `${id}-message`, "aria-live": "polite" });
      const field = h("div", { class: "field" }, h("label", { for: id }, label), input, h("span", { class: "hint", id: `${id}-hint` }, hint), message);
      parts.set(name, { input, message, field });
      return field;
    }),
  );

  function values() {
    const chosen = {};
    for (const [name, { input }] of parts) {
      const text = input.value.trim();
      if (!text) continue;
      // A priority that reads as a number is sent as one; anything else as typed, for the
      // server to name what is wrong with it.
      chosen[name] = name === "priority" && Number.isFinite(Number(text)) ? Number(text) : text;
    }
    return chosen;
  }

  function clearErrors() {
    for (const { message, field } of parts.values()) {
      message.textContent = "";
      field.classList.remove("invalid");
    }
  }

  function takeErrors(errors) {
    const others = [];
    for (const error of errors) {
      const part = parts.get(error.field);
      if (!part) {
        others.push(error);
        continue;
      }
      part.message.textContent = error.message;
      part.field.classList.add("invalid");
      element.open = true;
    }
    return others;
  }

  return { element, values, clearErrors, takeErrors };
}
