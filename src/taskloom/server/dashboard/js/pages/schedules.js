// Schedules: every schedule the server knows (given by a task's `schedule=` option, or
// stored with `taskloom schedule add` or the API), its rule in words and when it fires next.
// Schedules send no events: the page asks for them every two seconds while it is open.

import { api } from "../api.js";
import { errorNotice, h, replace } from "../dom.js";
import { formatTime, formatUtc, parseInstant } from "../format.js";

const POLL_MS = 2000;

/** The address of a schedule's page (a name may hold ":" and "."). */
export function scheduleHref(name) {
  return `#/schedules/${encodeURIComponent(name)}`;
}

/** "paused" or "active", as a badge (style.css colours both). */
export function stateBadge(schedule) {
  const state = schedule.paused ? "paused" : "active";
  return h("span", { class: "status", dataset: { status: state }, title: schedule.paused ? "it fires again once resumed" : "it fires at its next tick" }, state);
}

/** Where a schedule comes from, and whether an engine has recorded it on the database yet. */
export function sourceOf(schedule) {
  const source = schedule.source === "task" ? "task option" : schedule.source === "stored" ? "stored" : String(schedule.source ?? "—");
  return [source, schedule.recorded ? null : h("span", { class: "desc" }, "not recorded yet")];
}

/** The rule as it is written: the cron expression, or the interval in seconds. */
export function ruleText(schedule) {
  return schedule.kind === "interval" ? `interval ${schedule.rule} s` : schedule.rule;
}

function nextFire(schedule) {
  if (schedule.paused) return h("span", { class: "muted" }, "— (paused)");
  const at = parseInstant(schedule.next_fire);
  if (at === null) return h("span", { class: "muted", title: "the rule has no tick left (its end has passed)" }, "none");
  return [formatTime(at), h("span", { class: "desc mono" }, formatUtc(at))];
}

function row(schedule) {
  return h(
    "tr",
    { "data-schedule": schedule.name, "data-paused": String(Boolean(schedule.paused)) },
    h("td", { class: "mono name" }, h("a", { href: scheduleHref(schedule.name) }, schedule.name)),
    h("td", { class: "mono task" }, h("a", { href: `#/tasks/${encodeURIComponent(schedule.task)}` }, schedule.task)),
    h("td", { class: "wrap rule" }, schedule.description, h("span", { class: "desc mono" }, ruleText(schedule))),
    h("td", { class: "timezone" }, schedule.timezone),
    h("td", { class: "next-fire" }, nextFire(schedule)),
    h("td", { class: "state" }, stateBadge(schedule)),
    h("td", { class: "source" }, sourceOf(schedule)),
  );
}

export async function render(main) {
  const notice = h("div");
  const body = h("tbody");
  let stopped = false;
  let timer = null;

  replace(
    main,
    h("h1", {}, "Schedules"),
    h(
      "p",
      { class: "muted" },
      "A task's ",
      h("code", {}, "schedule="),
      " option, or a schedule stored with ",
      h("code", {}, "taskloom schedule add"),
      ": every engine serving the task fires it, one run per tick.",
    ),
    notice,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "schedules-table" },
        h(
          "thead",
          {},
          h("tr", {}, ["Schedule", "Task", "Rule", "Time zone", "Next fire", "State", "Source"].map((name) => h("th", {}, name))),
        ),
        body,
      ),
    ),
  );

  async function load() {
    try {
      const schedules = await api.listSchedules();
      if (stopped) return;
      replace(notice);
      replace(
        body,
        schedules.length
          ? schedules.map(row)
          : h(
              "tr",
              {},
              h("td", { colspan: 7, class: "muted", id: "schedules-empty" }, "No schedules: give a task ", h("code", {}, "schedule=taskloom.Cron(...)"), " or add one with ", h("code", {}, "taskloom schedule add"), "."),
            ),
      );
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
