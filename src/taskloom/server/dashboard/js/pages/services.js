// Services: each one's state, since when, starts, restarts and last error; start (with a
// config), stop and restart. Service events keep the table current.

import { ApiError, api } from "../api.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { schemaForm } from "../form.js";
import { formatAgo, formatTime } from "../format.js";

const ACTIVE = new Set(["starting", "running", "restarting"]);
const TICK_MS = 1000; // the "since" column counts on between events

export async function render(main) {
  const body = h("tbody");
  const notice = h("div");
  const panel = h("div", { id: "service-panel" });
  let services = [];
  let opened = null; // the service whose start form is open

  replace(
    main,
    h("h1", {}, "Services"),
    notice,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "services-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Service"),
            h("th", {}, "State"),
            h("th", {}, "Since"),
            h("th", { class: "num" }, "Starts"),
            h("th", { class: "num" }, "Restarts"),
            h("th", {}, "Last error"),
            h("th", {}, ""),
          ),
        ),
        body,
      ),
    ),
    panel,
  );

  async function act(name, action, button) {
    button.disabled = true;
    try {
      await action();
      replace(notice);
    } catch (error) {
      replace(notice, errorNotice(new Error(`${name}: ${error.message}`)));
    } finally {
      button.disabled = false;
      await load();
    }
  }

  function drawRows() {
    replace(
      body,
      services.length
        ? services.map((service) => {
            const active = ACTIVE.has(service.state);
            const start = h("button", { type: "button", class: "primary", "data-action": "start" }, "Start…");
            const stop = h("button", { type: "button", "data-action": "stop" }, "Stop");
            const restart = h("button", { type: "button", "data-action": "restart" }, "Restart");
            start.addEventListener("click", () => openStart(service));
            stop.addEventListener("click", () => act(service.name, () => api.stopService(service.name), stop));
            restart.addEventListener("click", () => act(service.name, () => api.restartService(service.name), restart));
            const error = service.last_error;
            return h(
              "tr",
              { "data-service": service.name },
              h("td", { class: "wrap" }, h("span", { class: "mono" }, service.name), service.description ? h("span", { class: "desc" }, service.description) : null),
              h("td", {}, statusBadge(service.state)),
              h("td", { title: formatTime(service.since), class: "since", "data-since": service.since ?? "" }, formatAgo(service.since)),
              h("td", { class: "num" }, String(service.starts ?? 0)),
              h("td", { class: "num" }, String(service.restarts ?? 0)),
              h("td", { class: "wrap" }, error ? h("span", { title: error.traceback ?? "" }, h("strong", {}, error.type), ": ", error.message) : h("span", { class: "muted" }, "—")),
              h("td", {}, h("div", { class: "row", style: "flex-wrap: nowrap; gap: 6px" }, active ? [stop, restart] : start)),
            );
          })
        : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No services are registered.")),
    );
  }

  function openStart(service) {
    opened = service.name;
    const fields = h("div");
    const formError = h("p", { class: "form-error", role: "alert" });
    const schema = service.config_schema ?? null;
    let form = null;
    let raw = null;
    if (schema && schema.properties && Object.keys(schema.properties).length) {
      form = schemaForm(fields, schema, { prefix: "config" });
    } else {
      raw = h("textarea", { id: "config-json", name: "config", rows: 3, spellcheck: false, placeholder: "{ }  optional JSON config" });
      replace(fields, h("div", { class: "field" }, h("label", { for: "config-json" }, "Config", h("span", { class: "type" }, "JSON, optional")), raw));
    }
    const submit = h("button", { type: "submit", class: "primary" }, "Start ", service.name);
    const close = h("button", { type: "button" }, "Close");
    close.addEventListener("click", () => {
      opened = null;
      replace(panel);
    });

    async function start(event) {
      event.preventDefault();
      formError.textContent = "";
      let config;
      if (form) {
        form.clearErrors();
        const got = form.values();
        if (!got.ok) return;
        config = got.value;
      } else if (raw.value.trim()) {
        try {
          config = JSON.parse(raw.value);
        } catch (error) {
          formError.textContent = `config is not valid JSON: ${error.message}`;
          return;
        }
      }
      submit.disabled = true;
      try {
        await api.startService(service.name, config);
        opened = null;
        replace(panel);
        replace(notice);
      } catch (error) {
        if (form && error instanceof ApiError && error.status === 422 && error.fields.length) form.setErrors(error.fields);
        else formError.textContent = error.message;
      } finally {
        submit.disabled = false;
        await load();
      }
    }

    replace(
      panel,
      h(
        "section",
        { class: "card", style: "margin-top: 20px" },
        h("h2", {}, "Start ", h("span", { class: "mono" }, service.name)),
        h("form", { id: "service-start-form", novalidate: true, onsubmit: start }, fields, h("div", { class: "form-actions" }, submit, close, formError)),
      ),
    );
  }

  async function load() {
    try {
      services = (await api.listServices()).sort((a, b) => a.name.localeCompare(b.name));
      drawRows();
      if (opened && !services.some((s) => s.name === opened)) replace(panel);
    } catch (error) {
      replace(notice, errorNotice(error));
    }
  }

  let pending = null;
  const refreshSoon = () => {
    if (pending === null) pending = setTimeout(() => ((pending = null), load()), 150);
  };
  const stop = watch(["service"], refreshSoon, load);
  const ticker = setInterval(() => {
    for (const cell of body.querySelectorAll("td.since")) {
      if (cell.dataset.since) cell.textContent = formatAgo(Number(cell.dataset.since));
    }
  }, TICK_MS);
  await load();
  return () => {
    stop();
    clearInterval(ticker);
    if (pending !== null) clearTimeout(pending);
  };
}
