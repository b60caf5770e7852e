// One schedule: its rule, time zone and inputs, its next five fire times (in UTC, in the
// browser's time zone and in the schedule's own), its last runs, and for operators Pause,
// Resume and Trigger. Schedules send no events: the page asks for the schedule every two
// seconds, and at once when a run of its task changes.

import { api } from "../api.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { watch } from "../events.js";
import { formatDuration, formatJson, formatTime, formatUtc, localZone, parseInstant, shortId, timeFormatIn } from "../format.js";
import { ruleText, sourceOf, stateBadge } from "./schedules.js";

const POLL_MS = 2000;
const MANUAL = "manual:";

/** What a schedule's run was made for, from its key: `schedule:<name>@<tick>`, or
 * `schedule:<name>@manual:<time asked>` for a trigger. */
function firedFor(run, prefix) {
  const rest = (run.idempotency_key ?? "").slice(prefix.length);
  if (rest.startsWith(MANUAL)) return ["by hand", h("span", { class: "desc mono" }, formatUtc(parseInstant(rest.slice(MANUAL.length))))];
  return ["tick", h("span", { class: "desc mono" }, formatUtc(parseInstant(rest)))];
}

function catchUpOf(schedule) {
  if (schedule.catch_up === "all") return `all (at most ${schedule.max_catch_up})`;
  if (schedule.catch_up === "one") return "one run, for the latest missed tick";
  return "skip";
}

/** `[label, format(seconds)]` for each column of the fire times: UTC, the browser's zone,
 * and the schedule's zone when it is neither (a cron rule's times are its wall-clock times). */
function fireColumns(timezone) {
  const columns = [["UTC", formatUtc], [`Local (${localZone()})`, formatTime]];
  if (timezone !== "UTC" && timezone !== localZone()) {
    const inZone = timeFormatIn(timezone);
    if (inZone) columns.push([timezone, (seconds) => inZone.format(new Date(seconds * 1000))]);
  }
  return columns;
}

export async function render(main, { args }) {
  const name = args[0];
  const prefix = `schedule:${name}@`;
  let schedule;
  try {
    schedule = await api.getSchedule(name);
  } catch (error) {
    replace(main, h("p", {}, h("a", { href: "#/schedules" }, "← Schedules")), h("h1", {}, "Schedule"), errorNotice(error));
    return;
  }

  const state = h("span", { id: "schedule-state" });
  const pause = h("button", { type: "button", id: "pause-schedule", title: "Stop firing until resumed" }, "Pause");
  const resume = h("button", { type: "button", id: "resume-schedule", title: "Fire again from the first tick after now" }, "Resume");
  const trigger = h("button", { type: "button", id: "trigger-schedule", title: "One run now, recorded as made by hand" }, "Trigger");
  const buttons = [pause, resume, trigger];
  const controls = h("div", { class: "row", id: "schedule-controls", hidden: true }, buttons);
  const viewerNote = h("p", { class: "muted", id: "schedule-viewer-note", hidden: true }, "Pausing, resuming and triggering need an operator token.");
  const notice = h("div"); // the schedule could not be read
  const actionNotice = h("div", { id: "schedule-action" }); // what a button did, or why it could not
  const facts = h("dl", { class: "facts", id: "schedule-facts" });
  const inputs = h("pre", { class: "block", id: "schedule-inputs" });
  const fires = h("div", { id: "schedule-fires" });
  const runs = h("tbody");
  let shownRuns = new Set();
  let stopped = false;
  let timer = null;
  let soon = null;
  let latest = 0; // the last load asked for: an older answer arriving late is dropped

  replace(
    main,
    h("p", {}, h("a", { href: "#/schedules" }, "← Schedules")),
    h("div", { class: "row page-head" }, h("h1", {}, h("span", { class: "mono" }, name)), state, h("span", { class: "spacer" }), controls),
    viewerNote,
    notice,
    actionNotice,
    h(
      "div",
      { class: "grid-2" },
      h("section", { class: "card" }, h("h2", {}, "Schedule"), facts),
      h("section", { class: "card" }, h("h2", {}, "Inputs of each run"), inputs),
    ),
    h("section", { class: "card", style: "margin-top: 20px" }, h("h2", {}, "Next fire times"), fires),
    h(
      "section",
      { class: "card", style: "margin-top: 20px" },
      h("h2", {}, "Last runs"),
      h(
        "div",
        { class: "table-wrap" },
        h("table", { id: "schedule-runs" }, h("thead", {}, h("tr", {}, ["Run", "Status", "Made for", "Created", "Duration"].map((label) => h("th", {}, label)))), runs),
      ),
    ),
  );

  function drawFires() {
    const times = (schedule.next_fires ?? []).map((iso) => [iso, parseInstant(iso)]).filter(([, at]) => at !== null);
    if (!times.length) {
      const why = schedule.paused ? "Paused: it fires again from the first tick after it is resumed." : "No tick is left: the rule's end has passed.";
      replace(fires, h("p", { class: "muted", id: "schedule-no-fires" }, why));
      return;
    }
    const columns = fireColumns(schedule.timezone);
    replace(
      fires,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "schedule-fire-times" },
          h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", {}, label)))),
          h("tbody", {}, times.map(([iso, at]) => h("tr", { "data-fire": iso }, columns.map(([, format], index) => h("td", { class: index === 0 ? "mono utc" : null }, format(at)))))),
        ),
      ),
    );
  }

  function drawRuns() {
    const list = schedule.runs ?? [];
    shownRuns = new Set(list.map((run) => run.id));
    replace(
      runs,
      list.length
        ? list.map((run) =>
            h(
              "tr",
              { "data-run": run.id },
              h("td", { class: "mono" }, h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, title: run.id }, shortId(run.id))),
              h("td", { class: "status-cell" }, statusBadge(run.status)),
              h("td", { class: "made-for" }, firedFor(run, prefix)),
              h("td", {}, formatTime(run.created_at)),
              h("td", { class: "num" }, formatDuration(run.started_at && run.finished_at ? run.finished_at - run.started_at : null)),
            ),
          )
        : h("tr", {}, h("td", { colspan: 5, class: "muted", id: "schedule-runs-empty" }, "No runs yet: the schedule has not fired.")),
    );
  }

  function draw() {
    replace(state, stateBadge(schedule));
    state.dataset.paused = String(Boolean(schedule.paused));
    pause.hidden = Boolean(schedule.paused);
    resume.hidden = !schedule.paused;
    const lastFire = parseInstant(schedule.last_fire);
    const entries = [
      ["Task", h("a", { href: `#/tasks/${encodeURIComponent(schedule.task)}`, class: "mono" }, schedule.task)],
      ["Rule", [h("span", { id: "schedule-description" }, schedule.description), " ", h("span", { class: "muted mono" }, `(${ruleText(schedule)})`)]],
      ["Time zone", h("span", { id: "schedule-timezone" }, schedule.timezone)],
      ["Source", h("span", { id: "schedule-source" }, sourceOf(schedule))],
      schedule.start ? ["Starts", formatUtc(parseInstant(schedule.start))] : null,
      schedule.end ? ["Ends", formatUtc(parseInstant(schedule.end))] : null,
      schedule.jitter ? ["Jitter", `each run delayed by up to ${schedule.jitter} s`] : null,
      ["Missed ticks", catchUpOf(schedule)],
      ["Last fired", lastFire === null ? "never" : [formatTime(lastFire), h("span", { class: "muted mono" }, ` (${formatUtc(lastFire)})`)]],
    ].filter(Boolean);
    replace(facts, entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
    inputs.textContent = formatJson(schedule.inputs ?? {});
    drawFires();
    drawRuns();
  }

  async function load() {
    const mine = ++latest;
    try {
      const fresh = await api.getSchedule(name);
      if (stopped || mine !== latest) return;
      schedule = fresh;
      replace(notice);
      draw();
    } catch (error) {
      if (!stopped && mine === latest) replace(notice, errorNotice(error));
    }
  }

  async function poll() {
    await load();
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  async function act(action, done) {
    for (const button of buttons) button.disabled = true;
    try {
      const answer = await action();
      replace(actionNotice, done ? h("p", { class: "notice", id: "schedule-action-done" }, done(answer)) : null);
    } catch (error) {
      replace(actionNotice, errorNotice(error));
    } finally {
      for (const button of buttons) button.disabled = false;
    }
    await load();
  }

  pause.addEventListener("click", () => act(() => api.pauseSchedule(name)));
  resume.addEventListener("click", () => act(() => api.resumeSchedule(name)));
  trigger.addEventListener("click", () =>
    act(
      () => api.triggerSchedule(name),
      () => `A run was asked for: a worker serving ${schedule.task} starts it within a second, and it appears under Last runs.`,
    ),
  );

  // A run of the schedule's task that starts or ends shows in Last runs without waiting for the next look.
  const stop = watch(["run"], (event) => {
    if (event.run?.task !== schedule.task && !shownRuns.has(event.runId)) return;
    if (soon === null) soon = setTimeout(() => ((soon = null), load()), 150);
  });

  draw();
  let operator = false;
  try {
    operator = await api.isOperator();
  } catch {
    operator = false;
  }
  controls.hidden = !operator;
  viewerNote.hidden = operator;
  timer = setTimeout(poll, POLL_MS);
  return () => {
    stopped = true;
    stop();
    if (timer !== null) clearTimeout(timer);
    if (soon !== null) clearTimeout(soon);
  };
}
