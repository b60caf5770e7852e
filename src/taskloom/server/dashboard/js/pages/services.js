// Services: each one's state, since when, starts, restarts and last error; start (with a
// config), stop and restart. Service events keep the table current. A loop of a service
// class shows the class's live attributes in a form made from their JSON Schema; their
// changes (from anywhere, the class's own code too) arrive as events and show at once.

import { ApiError, api } from "../api.js";
import { setQuery } from "../address.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { schemaForm } from "../form.js";
import { formatAgo, formatClock, formatDuration, formatTime } from "../format.js";

const ACTIVE = new Set(["starting", "running", "restarting"]);
const TICK_MS = 1000; // the "since" column counts on between events
const LOG_POLL_MS = 1000; // service log lines are not live events: the open panel asks for them

export async function render(main, { query }) {
  const body = h("tbody");
  const notice = h("div");
  const panel = h("div", { id: "service-panel" });
  const detail = h("div", { id: "service-detail" });
  let services = [];
  let opened = null; // the service whose start form is open
  let shown = query.get("service"); // the service whose starts and logs are shown
  let stopLogs = null;
  let detailParts = null; // the parts of the shown service's panel that events redraw
  let attributeParts = null; // the attributes form of the shown loop's class, if any

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
    detail,
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
              h(
                "td",
                { class: "wrap" },
                h("a", { href: `#/services?service=${encodeURIComponent(service.name)}`, class: "mono", "data-show": service.name, onclick: (event) => show(event, service.name) }, service.name),
                service.description ? h("span", { class: "desc" }, service.description) : null,
              ),
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

  function show(event, name) {
    event.preventDefault();
    shown = name;
    setQuery({ service: name });
    drawDetail();
  }

  /** The shown service's recent starts and its log lines, polled while the panel is open. */
  function drawDetail() {
    stopLogs?.();
    stopLogs = null;
    detailParts = null;
    attributeParts = null;
    const service = services.find((s) => s.name === shown);
    if (!service) {
      replace(detail);
      return;
    }
    const starts = h("tbody");
    const badge = h("span", { id: "service-state" });
    const config = h("code", { id: "service-config", class: "mono wrap" });
    const attributes = service.instance ? h("section", { id: "service-attributes", "data-instance": service.instance }) : null;
    const logs = h("div", { class: "logs", id: "service-logs", role: "log" });
    let after = 0;
    let stopped = false;
    let timer = null;

    async function poll() {
      try {
        const lines = await api.getServiceLogs(service.name, after);
        if (stopped) return;
        if (lines.length) {
          logs.querySelector(".empty")?.remove();
          const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 24;
          logs.append(
            ...lines.map((line) =>
              h(
                "div",
                { class: "line", dataset: { level: line.level ?? "" } },
                h("span", { class: "muted" }, formatClock(line.created_at)),
                h("span", { class: "level" }, line.level ?? ""),
                h("span", {}, line.message),
              ),
            ),
          );
          after = Math.max(after, ...lines.map((line) => line.id ?? 0));
          if (atBottom) logs.scrollTop = logs.scrollHeight;
        } else if (!after && !logs.querySelector(".empty")) {
          logs.append(h("div", { class: "empty" }, "No log lines yet."));
        }
      } catch (error) {
        if (!stopped) replace(notice, errorNotice(error));
      }
      if (!stopped) timer = setTimeout(poll, LOG_POLL_MS);
    }
    stopLogs = () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    };

    const close = h("button", { type: "button" }, "Close");
    close.addEventListener("click", () => {
      shown = null;
      setQuery({});
      drawDetail();
    });
    replace(
      detail,
      h(
        "section",
        { class: "card", style: "margin-top: 20px" },
        h("div", { class: "row page-head" }, h("h2", { style: "margin: 0" }, h("span", { class: "mono" }, service.name)), badge, h("span", { class: "spacer" }), close),
        h(
          "div",
          { class: "grid-2" },
          h(
            "div",
            {},
            h("h3", {}, "Recent starts"),
            h(
              "div",
              { class: "table-wrap" },
              h("table", { id: "service-starts" }, h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "Started"), h("th", {}, "Ran"), h("th", {}, "Ended"))), starts),
            ),
          ),
          h("div", {}, h("h3", {}, "Logs"), logs),
        ),
        h("p", {}, h("span", { class: "muted" }, "Config "), config),
        attributes,
      ),
    );
    detailParts = { starts, badge, config };
    if (attributes) drawAttributes(attributes, service.instance);
    updateDetail();
    poll();
  }

  /** The live attributes of a service class: a form from their schema, showing each value
   * now; events of their changes update the fields a person is not editing. */
  async function drawAttributes(container, instance) {
    let data;
    try {
      data = await api.getServiceAttributes(instance);
    } catch (error) {
      replace(container, errorNotice(error));
      return;
    }
    if (!container.isConnected) return; // another service was shown meanwhile
    const fields = h("div");
    const formError = h("p", { class: "form-error", role: "alert" });
    const updated = h("ul", { class: "muted", id: "service-attributes-updated" });
    const form = schemaForm(fields, data.schema, { prefix: "attribute" });
    let known = { ...data.values };
    let who = { ...data.updated };
    form.setValues(known, { force: true });
    const submit = h("button", { type: "submit", class: "primary" }, "Set");

    function drawUpdated() {
      const names = Object.keys(who).sort();
      replace(
        updated,
        names.length
          ? names.map((name) => h("li", { "data-attribute": name }, h("span", { class: "mono" }, name), ` set by ${who[name].by} at ${formatClock(who[name].at)}`))
          : h("li", {}, "Every attribute holds its default."),
      );
    }

    async function send(event) {
      event.preventDefault();
      form.clearErrors();
      formError.textContent = "";
      const got = form.values();
      if (!got.ok) return;
      // Only what differs from the values known now: the others are not changed by this.
      const changed = Object.fromEntries(Object.entries(got.value).filter(([name, value]) => JSON.stringify(value) !== JSON.stringify(known[name])));
      if (!Object.keys(changed).length) {
        formError.textContent = "Nothing to change.";
        return;
      }
      submit.disabled = true;
      try {
        const answer = await api.setServiceAttributes(instance, changed);
        known = { ...answer.values };
        who = { ...answer.updated };
        form.setValues(known, { force: true });
        drawUpdated();
      } catch (error) {
        if (error instanceof ApiError && error.status === 422 && error.fields.length) form.setErrors(error.fields);
        else formError.textContent = error.message;
      } finally {
        submit.disabled = false;
      }
    }

    replace(
      container,
      h("h3", {}, "Attributes of ", h("span", { class: "mono" }, instance)),
      h("form", { id: "service-attributes-form", novalidate: true, onsubmit: send }, fields, h("div", { class: "form-actions" }, submit, formError)),
      updated,
    );
    drawUpdated();
    attributeParts = {
      instance,
      changed(change) {
        Object.assign(known, change.values);
        for (const name of Object.keys(change.values)) who[name] = { at: change.changed_at, by: change.changed_by };
        form.setValues(change.values);
        drawUpdated();
      },
      async refresh() {
        try {
          const again = await api.getServiceAttributes(instance);
          known = { ...again.values };
          who = { ...again.updated };
          form.setValues(known);
          drawUpdated();
        } catch (error) {
          replace(notice, errorNotice(error));
        }
      },
    };
  }

  /** The state and recent starts of the shown service, as the last load found them. */
  async function updateDetail() {
    if (!detailParts || !shown) return;
    const parts = detailParts;
    let service;
    try {
      service = await api.getService(shown); // the list leaves out each service's starts
    } catch (error) {
      replace(notice, errorNotice(error));
      return;
    }
    if (parts !== detailParts) return; // another service was shown meanwhile
    const { starts, badge, config } = parts;
    replace(badge, statusBadge(service.state));
    config.textContent = service.config === null || service.config === undefined ? "none" : JSON.stringify(service.config);
    const history = [...(service.history ?? [])].reverse();
    replace(
      starts,
      history.length
        ? history.map((start) =>
            h(
              "tr",
              {},
              h("td", { class: "num" }, String(start.number), start.restart ? h("span", { class: "muted", title: "restarted by the restart policy" }, " ↻") : null),
              h("td", {}, formatTime(start.started_at)),
              h("td", {}, formatDuration((start.ended_at ?? Date.now() / 1000) - start.started_at)),
              h("td", { class: "wrap" }, start.exit_reason ?? h("span", { class: "muted" }, "running"), start.error ? h("span", { class: "desc" }, `${start.error.type}: ${start.error.message}`) : null),
            ),
          )
        : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Never started.")),
    );
  }

  async function load() {
    try {
      services = (await api.listServices()).sort((a, b) => a.name.localeCompare(b.name));
      drawRows();
      updateDetail();
      attributeParts?.refresh();
      if (opened && !services.some((s) => s.name === opened)) replace(panel);
    } catch (error) {
      replace(notice, errorNotice(error));
    }
  }

  let pending = null;
  const refreshSoon = () => {
    if (pending === null) pending = setTimeout(() => ((pending = null), load()), 150);
  };
  const onServiceEvent = (event) => {
    if (event.name !== "service_attribute") refreshSoon();
    else if (attributeParts && event.data.service === attributeParts.instance) attributeParts.changed(event.data);
  };
  const stop = watch(["service"], onServiceEvent, load);
  const ticker = setInterval(() => {
    for (const cell of body.querySelectorAll("td.since")) {
      if (cell.dataset.since) cell.textContent = formatAgo(Number(cell.dataset.since));
    }
  }, TICK_MS);
  await load();
  drawDetail();
  return () => {
    stop();
    stopLogs?.();
    clearInterval(ticker);
    if (pending !== null) clearTimeout(pending);
  };
}
