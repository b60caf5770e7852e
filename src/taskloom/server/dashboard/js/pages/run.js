// One run: its status and progress, inputs, result or error with traceback, attempts
// timeline (each attempt with the worker and the executor that ran it) and logs, all kept
// live by run and log events; and the cancel button.

import { api } from "../api.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { formatClock, formatDuration, formatJson, formatTime } from "../format.js";

const FINISHED = new Set(["completed", "failed", "cancelled", "skipped"]);

/** The schedule that made a run, from its key: `schedule:<name>@<tick>`, or
 * `schedule:<name>@manual:<time asked>` when triggered by hand (a name holds no "@"). */
function scheduleOrigin(key) {
  const match = /^schedule:([^@]+)@(manual:)?/.exec(key ?? "");
  return match ? { name: match[1], byHand: Boolean(match[2]) } : null;
}

/** What else started a run, from its key: a webhook (`hook:<name>@...`), or the task
 * that runs once another run ended (`on_success:<run>`, `on_failure:<run>`). */
function otherOrigin(run) {
  const key = run.idempotency_key ?? "";
  const hook = /^hook:([^@]+)@/.exec(key);
  if (hook) {
    return ["Origin", h("span", { id: "run-origin", title: key }, "started by webhook ", h("span", { class: "mono" }, hook[1]))];
  }
  const follow = /^(on_success|on_failure):(.+)$/.exec(key);
  if (follow) {
    const link = h("a", { href: `#/runs/${encodeURIComponent(follow[2])}`, class: "mono" }, follow[2]);
    const ending = follow[1] === "on_success" ? " completed" : " failed";
    return ["Origin", h("span", { id: "run-origin", title: key }, "started when run ", link, ending)];
  }
  return null;
}

function originOf(run) {
  const origin = scheduleOrigin(run.idempotency_key);
  if (!origin) return otherOrigin(run);
  const link = h("a", { href: `#/schedules/${encodeURIComponent(origin.name)}`, class: "mono" }, origin.name);
  const words = origin.byHand ? "triggered by hand from schedule " : "started by schedule ";
  return ["Origin", h("span", { id: "run-origin", title: run.idempotency_key }, words, link)];
}

/** What made an attempt's call (`serial`, `dask tcp://...`), with a link to the Dask
 * dashboard when the scheduler serves one (an attempt an older taskloom recorded says
 * neither). Only an http(s) address is a link: the page never follows a `javascript:`. */
function executorOf(attempt) {
  if (!attempt.executor) return null;
  const board = /^https?:\/\//i.test(attempt.dashboard ?? "") ? attempt.dashboard : null;
  return h(
    "div",
    { class: "muted attempt-executor" },
    "executor ",
    h("span", { class: "mono", title: "what made this attempt's call" }, attempt.executor),
    board ? [" · ", h("a", { href: board, target: "_blank", rel: "noopener", class: "attempt-dashboard" }, "Dask dashboard")] : null,
  );
}

export async function render(main, { args }) {
  const id = args[0];
  let run;
  try {
    run = await api.getRun(id);
  } catch (error) {
    replace(main, h("h1", {}, "Run"), errorNotice(error));
    return;
  }

  const title = h("h1");
  const badge = h("span", { id: "run-status" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-run" }, "Cancel");
  const again = h("button", { type: "button", id: "run-again", title: "Submit a new run of this task with the same inputs" }, "Run again");
  const notice = h("div");
  const facts = h("dl", { class: "facts" });
  const progress = h("div", { id: "run-progress" });
  const inputs = h("pre", { class: "block", id: "run-inputs" });
  const outcome = h("div", { id: "run-outcome" });
  const attempts = h("ol", { class: "timeline", id: "run-attempts" });
  const logs = h("div", { class: "logs", id: "run-logs", role: "log", "aria-live": "polite" });
  const seenLines = new Set();
  let lastLineId = 0;

  replace(
    main,
    h("p", {}, h("a", { href: `#/runs?task=${encodeURIComponent(run.task)}` }, "← Runs of ", run.task)),
    h("div", { class: "row page-head" }, title, badge, h("span", { class: "spacer" }), again, cancel),
    notice,
    progress,
    h(
      "div",
      { class: "grid-2", style: "margin-top: 16px" },
      h("section", { class: "card" }, h("h2", {}, "Run"), facts),
      h("section", { class: "card" }, h("h2", {}, "Inputs"), inputs),
    ),
    h("section", { class: "card", style: "margin-top: 20px" }, h("h2", {}, "Outcome"), outcome),
    h(
      "div",
      { class: "grid-2", style: "margin-top: 20px" },
      h("section", { class: "card" }, h("h2", {}, "Attempts"), attempts),
      h("section", { class: "card" }, h("h2", {}, "Logs"), logs),
    ),
  );

  function drawRun() {
    replace(title, h("span", { class: "mono" }, run.task));
    replace(badge, statusBadge(run.status));
    cancel.hidden = FINISHED.has(run.status);
    cancel.disabled = Boolean(run.cancel_requested);
    const entries = [
      ["Id", h("span", { class: "mono" }, run.id)],
      ["Created", formatTime(run.created_at)],
      ["Started", formatTime(run.started_at)],
      ["Finished", formatTime(run.finished_at)],
      ["Duration", formatDuration(run.started_at && run.finished_at ? run.finished_at - run.started_at : null)],
      ["Attempts", `${run.attempts ?? 0} of ${run.max_attempts ?? 1}`],
      ["Priority", String(run.priority ?? 0)],
      originOf(run),
      run.parent_id ? ["Parent", h("a", { href: `#/runs/${encodeURIComponent(run.parent_id)}`, class: "mono" }, run.parent_id)] : null,
      run.cancel_requested && !FINISHED.has(run.status) ? ["Cancel", "requested"] : null,
    ].filter(Boolean);
    replace(facts, entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));

    const fraction = run.status === "completed" ? 1 : run.progress;
    replace(
      progress,
      fraction === null || fraction === undefined
        ? null
        : [
            h(
              "div",
              { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(fraction * 100) },
              h("span", { style: `width: ${Math.max(0, Math.min(1, fraction)) * 100}%` }),
            ),
            h("p", { class: "muted", style: "margin: 4px 0 0" }, `${Math.round(fraction * 100)}%`, run.progress_message ? ` · ${run.progress_message}` : ""),
          ],
    );

    inputs.textContent = formatJson(run.inputs ?? {});

    if (run.status === "completed") {
      replace(outcome, h("h3", {}, "Result"), h("pre", { class: "block", id: "run-result" }, formatJson(run.result)));
    } else if (run.error) {
      replace(
        outcome,
        h("p", { id: "run-error" }, h("strong", {}, run.error.type), ": ", run.error.message),
        run.error.traceback
          ? h("details", { open: run.status === "failed" }, h("summary", { class: "muted" }, "Traceback"), h("pre", { class: "block traceback" }, run.error.traceback))
          : null,
      );
    } else {
      replace(outcome, h("p", { class: "muted" }, FINISHED.has(run.status) ? `The run was ${run.status}.` : "The run has not finished yet."));
    }
  }

  // Each attempt is a bar on one time axis, from the first attempt's start to the last's
  // end: where it sits shows when it ran (and the wait before a retry), its width how long.
  function drawAttempts(list) {
    const now = Date.now() / 1000;
    const first = Math.min(...list.map((a) => a.started_at));
    const last = Math.max(...list.map((a) => a.finished_at ?? now));
    const span = Math.max(0.001, last - first);
    replace(
      attempts,
      list.length
        ? list.map((attempt) => {
            const took = (attempt.finished_at ?? now) - attempt.started_at;
            const at = Math.min(1, (attempt.started_at - first) / span); // 0..1 along the axis
            return h(
              "li",
              {},
              h("span", {}, `#${attempt.number}`, " ", statusBadge(attempt.status)),
              h("span", { class: "muted" }, formatClock(attempt.started_at), " · ", formatDuration(took)),
              h(
                "div",
                {},
                h("div", {
                  class: "bar",
                  dataset: { status: attempt.status },
                  // A bar is at least 8px wide (style.css): one at the very end still fits.
                  style: `margin-left: calc(${at * 100}% - ${at * 8}px); width: ${(took / span) * 100}%`,
                }),
                attempt.error ? h("div", { class: "muted" }, `${attempt.error.type}: ${attempt.error.message}`) : null,
                attempt.worker_id
                  ? h("div", { class: "muted attempt-worker" }, "on ", h("a", { href: "#/workers", class: "mono", title: "the worker that ran this attempt" }, attempt.worker_id))
                  : null,
                executorOf(attempt),
              ),
            );
          })
        : h("li", { class: "muted" }, "No attempt has started yet."),
    );
  }

  function addLines(lines) {
    const fresh = lines.filter((line) => {
      // Lines from events may not have their store id yet: they are told apart by content.
      const key = `${line.created_at}|${line.attempt}|${line.level}|${line.message}`;
      if (seenLines.has(key)) return false;
      seenLines.add(key);
      if (typeof line.id === "number") lastLineId = Math.max(lastLineId, line.id);
      return true;
    });
    if (!fresh.length) return;
    logs.querySelector(".empty")?.remove();
    const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 24;
    logs.append(
      ...fresh.map((line) =>
        h(
          "div",
          { class: "line", dataset: { level: line.level ?? "" } },
          h("span", { class: "muted" }, formatClock(line.created_at)),
          h("span", { class: "level" }, line.level ?? ""),
          h("span", {}, line.message),
        ),
      ),
    );
    if (atBottom) logs.scrollTop = logs.scrollHeight;
  }

  async function refreshRun() {
    try {
      run = await api.getRun(id);
      drawRun();
      drawAttempts(await api.getAttempts(id));
      replace(notice);
    } catch (error) {
      replace(notice, errorNotice(error));
    }
  }

  async function refreshLogs() {
    try {
      addLines(await api.getLogs(id, lastLineId));
    } catch (error) {
      replace(notice, errorNotice(error));
    }
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      run = await api.cancelRun(id);
      drawRun();
    } catch (error) {
      replace(notice, errorNotice(error));
      cancel.disabled = false;
    }
  });

  again.addEventListener("click", async () => {
    again.disabled = true;
    try {
      const next = await api.submitRun(run.task, run.inputs ?? {});
      window.location.hash = `#/runs/${encodeURIComponent(next.id)}`;
    } catch (error) {
      replace(notice, errorNotice(error));
    } finally {
      again.disabled = false;
    }
  });

  // Events in a burst (a run's start, progress and end) make one refresh of the run.
  let pending = null;
  const refreshSoon = () => {
    if (pending === null) pending = setTimeout(() => ((pending = null), refreshRun()), 150);
  };
  const stop = watch(
    ["run", "log"],
    (event) => {
      if (event.runId !== id) return;
      if (event.line) {
        // A line the event carries whole is shown as it is; otherwise it is fetched.
        if (event.line.message !== undefined) addLines([event.line]);
        else refreshLogs();
        return;
      }
      if (event.run && event.run.status) {
        run = { ...run, ...event.run };
        drawRun();
      }
      refreshSoon(); // the attempts (and anything the event left out) come from the API
    },
    () => {
      if (!FINISHED.has(run.status)) refreshRun();
      refreshLogs();
    },
  );

  drawRun();
  await Promise.all([refreshRun(), refreshLogs()]);
  if (!seenLines.size) logs.append(h("div", { class: "empty" }, FINISHED.has(run.status) ? "The run logged nothing." : "No log lines yet."));
  return () => {
    stop();
    if (pending !== null) clearTimeout(pending);
  };
}
