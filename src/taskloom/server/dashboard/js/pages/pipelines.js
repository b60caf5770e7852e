// Pipelines: the deployments (running and stopped), deploying one the served files define,
// and a deployment's stages with live message rates, its topics, stop and a publish box.
// Rates are computed here from successive status snapshots (messages per second between
// two looks); the page asks for the status every second while it is open.

import { API, ApiError, request } from "../api.js";
import { setQuery } from "../address.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { formatTime } from "../format.js";
import { openStream } from "../sse.js";

const POLL_MS = 1000;
const TAIL_LINES = 50; // the newest messages a followed topic keeps on the page
const enc = encodeURIComponent;

const pipelinesApi = {
  list: () => request("GET", "/pipelines"),
  available: () => request("GET", "/pipelines/available"),
  status: (name) => request("GET", `/pipelines/${enc(name)}`),
  deploy: (pipeline) => request("POST", "/pipelines", { pipeline }),
  stop: (name) => request("POST", `/pipelines/${enc(name)}/stop`),
  publish: (name, topic, value) => request("POST", `/pipelines/${enc(name)}/topics/${enc(topic)}`, { value }),
};

/** Messages per second of each stage between two snapshots of a deployment's status. */
export function rates(previous, current, seconds) {
  const result = {};
  for (const stage of current.stages) {
    const before = previous?.stages.find((s) => s.stage === stage.stage);
    result[stage.stage] =
      before && seconds > 0
        ? { in: (stage.messages_in - before.messages_in) / seconds, out: (stage.messages_out - before.messages_out) / seconds }
        : null;
  }
  return result;
}

const rate = (value) => (value === null || value === undefined ? "—" : value.toFixed(1));

export async function render(main, { query }) {
  const notice = h("div");
  const table = h("tbody");
  const deployRow = h("div", { class: "row", id: "pipeline-deploy", style: "margin-bottom: 12px" });
  const detail = h("div", { id: "pipeline-detail" });
  const tailBox = h("div", { id: "pipeline-tail" });
  let source = null; // the stream of the followed topic: { close }
  let shown = query.get("deployment");
  let snapshot = null; // {status, at}: the last status of the shown deployment, for rates
  let stopped = false;
  let timer = null;

  replace(
    main,
    h("h1", {}, "Pipelines"),
    notice,
    deployRow,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "pipelines-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Deployment"), h("th", {}, "Pipeline"), h("th", {}, "State"), h("th", { class: "num" }, "Stages"), h("th", {}, "Started"), h("th", {}, ""))),
        table,
      ),
    ),
    detail,
    tailBox,
  );

  function unfollow() {
    source?.close();
    source = null;
  }

  /** Follow a topic of the shown deployment: its newest messages, live (Server-Sent Events). */
  function drawTail(status) {
    unfollow();
    if (!status.here || status.state !== "running") {
      replace(tailBox);
      return;
    }
    const names = Object.keys(status.topics).sort();
    const topic = h("select", { id: "tail-topic", "aria-label": "Topic to follow" }, names.map((n) => h("option", { value: n }, n)));
    const lines = h("div", { class: "logs", id: "tail-lines", role: "log" });
    const dropped = h("span", { class: "muted", id: "tail-dropped" });
    const follow = h("button", { type: "button", id: "tail-follow" }, "Follow");
    follow.addEventListener("click", () => {
      unfollow();
      replace(lines);
      replace(dropped);
      const address = `${API}/pipelines/${enc(status.name)}/topics/${enc(topic.value)}/tail`;
      // Read with fetch: the token goes in the Authorization header, never in the URL.
      const stream = openStream(address, {
        onEvent: (name, data) => {
          if (name === "lagged") {
            dropped.textContent = `${JSON.parse(data).dropped} dropped (the page fell behind)`;
            return;
          }
          const message = JSON.parse(data);
          lines.append(h("div", { class: "line" }, h("span", { class: "muted" }, String(message.timestamp)), h("span", { class: "level" }), h("span", { class: "mono" }, JSON.stringify(message.value))));
          while (lines.childElementCount > TAIL_LINES) lines.firstElementChild.remove();
          lines.scrollTop = lines.scrollHeight;
        },
        onEnd: () => source === stream && unfollow(), // the deployment stopped
      });
      source = stream;
    });
    replace(tailBox, h("section", { class: "card", style: "margin-top: 20px" }, h("h3", {}, "Follow a topic"), h("div", { class: "row" }, topic, follow, dropped), lines));
  }

  async function act(action, button) {
    button.disabled = true;
    try {
      await action();
      replace(notice);
    } catch (error) {
      replace(notice, errorNotice(error));
    } finally {
      button.disabled = false;
      await load();
    }
  }

  async function drawDeploy() {
    let available = [];
    try {
      available = await pipelinesApi.available();
    } catch (error) {
      replace(notice, errorNotice(error));
    }
    if (!available.length) {
      replace(deployRow);
      return;
    }
    const select = h("select", { id: "pipeline-choice", "aria-label": "Pipeline" }, available.map((p) => h("option", { value: p.name }, p.name)));
    const button = h("button", { type: "button", class: "primary", id: "pipeline-deploy-button" }, "Deploy");
    button.addEventListener("click", () =>
      act(async () => {
        const deployed = await pipelinesApi.deploy(select.value);
        show(deployed.name);
      }, button),
    );
    replace(deployRow, h("span", { class: "muted" }, "Served pipelines:"), select, button);
  }

  function drawList(deployments) {
    replace(
      table,
      deployments.length
        ? deployments.map((d) => {
            const stop = h("button", { type: "button", "data-action": "stop" }, "Stop");
            stop.addEventListener("click", () => act(() => pipelinesApi.stop(d.name), stop));
            return h(
              "tr",
              { "data-deployment": d.name },
              h("td", {}, h("a", { href: `#/pipelines?deployment=${enc(d.name)}`, class: "mono", onclick: (event) => (event.preventDefault(), show(d.name)) }, d.name)),
              h("td", { class: "mono" }, d.pipeline),
              h("td", {}, statusBadge(d.state)),
              h("td", { class: "num" }, String(d.stages.length)),
              h("td", {}, formatTime(d.started_at)),
              h("td", {}, d.state === "running" ? stop : null),
            );
          })
        : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No deployments yet.")),
    );
  }

  function show(name) {
    shown = name;
    snapshot = null;
    setQuery({ deployment: name });
    replace(detail);
    replace(tailBox);
    unfollow();
    poll();
  }

  function drawDetail(status, rateOf) {
    const stages = h(
      "table",
      { id: "pipeline-stages" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Stage", "Task", "State"].map((t) => h("th", {}, t)),
          ["In", "Out", "In/s", "Out/s", "Dropped", "Errors", "Restarts"].map((t) => h("th", { class: "num" }, t)),
          h("th", {}, "Last error"),
        ),
      ),
      h(
        "tbody",
        {},
        status.stages.map((s) =>
          h(
            "tr",
            { "data-stage": s.stage },
            h("td", { class: "mono" }, s.stage),
            h("td", { class: "mono" }, s.task),
            h("td", {}, statusBadge(s.state)),
            h("td", { class: "num", "data-count": "in" }, String(s.messages_in)),
            h("td", { class: "num", "data-count": "out" }, String(s.messages_out)),
            h("td", { class: "num", "data-rate": "in" }, rate(rateOf[s.stage]?.in)),
            h("td", { class: "num", "data-rate": "out" }, rate(rateOf[s.stage]?.out)),
            h("td", { class: "num", "data-count": "dropped" }, String(s.dropped)),
            h("td", { class: "num", "data-count": "errors" }, String(s.errors)),
            h("td", { class: "num" }, String(s.restarts)),
            h("td", { class: "wrap" }, s.last_error ? h("span", {}, h("strong", {}, s.last_error.type), ": ", s.last_error.message) : h("span", { class: "muted" }, "—")),
          ),
        ),
      ),
    );
    const topicNames = Object.keys(status.topics).sort();
    const topics = h(
      "table",
      { id: "pipeline-topics" },
      h("thead", {}, h("tr", {}, h("th", {}, "Topic"), h("th", {}, "From"), h("th", {}, "To"))),
      h(
        "tbody",
        {},
        topicNames.map((name) => {
          const topic = status.topics[name];
          const ports = (list) => (list ?? []).map((p) => `${p.stage}.${p.port}`).join(", ") || "outside";
          return h("tr", {}, h("td", { class: "mono" }, name), h("td", { class: "mono" }, ports(topic.producers)), h("td", { class: "mono" }, ports(topic.consumers)));
        }),
      ),
    );
    // The processes running it: the deployment is stopped once every one of them is.
    const processes = h(
      "table",
      { id: "pipeline-parts" },
      h("thead", {}, h("tr", {}, ["Part", "Host", "PID", "Stages", "State", "Last seen"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        (status.parts ?? []).map((p) =>
          h(
            "tr",
            { "data-part": p.part },
            h("td", { class: "mono" }, p.part),
            h("td", { class: "mono" }, p.host),
            h("td", { class: "mono" }, String(p.pid)),
            h("td", { class: "mono" }, p.stages.join(", ") || "—"),
            h("td", {}, statusBadge(p.state)),
            h("td", {}, formatTime(p.updated_at)),
          ),
        ),
      ),
    );
    const close = h("button", { type: "button" }, "Close");
    close.addEventListener("click", () => {
      shown = null;
      setQuery({});
      replace(detail);
      replace(tailBox);
      unfollow();
    });
    const parts = [
      h("div", { class: "row page-head" }, h("h2", { style: "margin: 0" }, h("span", { class: "mono" }, status.name)), statusBadge(status.state), h("span", { class: "muted" }, `on ${status.bus}`), h("span", { class: "spacer" }), close),
      h("div", { class: "table-wrap" }, stages),
      h("h3", {}, "Topics"),
      h("div", { class: "table-wrap" }, topics),
      h("h3", {}, "Processes"),
      h("div", { class: "table-wrap" }, processes),
    ];
    if (status.here && status.state === "running") parts.push(publishBox(status, topicNames.filter((n) => status.topics[n].consumers?.length)));
    replace(detail, h("section", { class: "card", style: "margin-top: 20px" }, parts));
  }

  let publishState = { topic: null, value: "" }; // kept across redraws
  function publishBox(status, topicNames) {
    if (!topicNames.length) return null;
    const topic = h("select", { id: "publish-topic", "aria-label": "Topic" }, topicNames.map((n) => h("option", { value: n, selected: n === publishState.topic }, n)));
    const value = h("input", { id: "publish-value", type: "text", class: "mono", placeholder: "JSON value, e.g. 5", value: publishState.value });
    const message = h("p", { class: "form-error", role: "alert", id: "publish-error" });
    const sent = h("span", { class: "muted", id: "publish-sent" });
    value.addEventListener("input", () => (publishState.value = value.value));
    topic.addEventListener("change", () => (publishState.topic = topic.value));
    const submit = h("button", { type: "submit", class: "primary" }, "Publish");
    async function publish(event) {
      event.preventDefault();
      message.textContent = "";
      let parsed;
      try {
        parsed = JSON.parse(value.value);
      } catch {
        parsed = value.value; // text that is not JSON is sent as text
      }
      submit.disabled = true;
      try {
        await pipelinesApi.publish(status.name, topic.value, parsed);
        sent.textContent = `published to ${topic.value}`;
      } catch (error) {
        message.textContent = error instanceof ApiError ? error.message : String(error);
      } finally {
        submit.disabled = false;
      }
    }
    return h(
      "form",
      { id: "publish-form", novalidate: true, onsubmit: publish },
      h("h3", {}, "Publish"),
      h("div", { class: "row" }, topic, value, submit, sent),
      message,
    );
  }

  async function poll() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (shown) {
      try {
        const status = await pipelinesApi.status(shown);
        const at = performance.now() / 1000;
        const rateOf = rates(snapshot?.status, status, snapshot ? at - snapshot.at : 0);
        // The follow box is drawn once per deployment (and when it starts or stops running).
        const live = status.here && status.state === "running";
        if (!snapshot || live !== (snapshot.status.here && snapshot.status.state === "running")) drawTail(status);
        snapshot = { status, at };
        // Keep the publish box (and what is typed in it) while redrawing the numbers.
        const focused = document.activeElement?.id;
        drawDetail(status, rateOf);
        if (focused) document.getElementById(focused)?.focus();
      } catch (error) {
        replace(detail, errorNotice(error));
      }
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  async function load() {
    try {
      drawList(await pipelinesApi.list());
    } catch (error) {
      replace(notice, errorNotice(error));
    }
  }

  const lister = setInterval(load, POLL_MS * 2);
  await Promise.all([drawDeploy(), load()]);
  poll();
  return () => {
    stopped = true;
    unfollow();
    clearInterval(lister);
    if (timer !== null) clearTimeout(timer);
  };
}
