// How times, durations and values are shown.

// One formatter for every time shown: making one per call (toLocaleString with options)
// costs more than the rest of drawing a table row.
const DATE_TIME_OPTIONS = {
  year: "numeric",
  month: "short",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
};
const DATE_TIME = new Intl.DateTimeFormat(undefined, DATE_TIME_OPTIONS);

/** Seconds since the epoch (UTC) as local date and time; "—" when missing. */
export function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return DATE_TIME.format(new Date(seconds * 1000));
}

/** A clock time with milliseconds, for log lines. */
export function formatClock(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const date = new Date(seconds * 1000);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A duration in seconds, made short: 850 ms, 3.2 s, 4 min 05 s, 2 h 10 min. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.max(0, Math.round(seconds * 1000))} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** How long ago, for "since" columns: "12 s ago". */
export function formatAgo(seconds, now = Date.now() / 1000) {
  if (seconds === null || seconds === undefined) return "—";
  const age = Math.max(0, now - seconds);
  return age < 60 ? `${Math.floor(age)} s ago` : `${formatDuration(age)} ago`;
}

/** A value as indented JSON (results, inputs). */
export function formatJson(value) {
  return JSON.stringify(value, null, 2) ?? "null";
}

/** The first characters of a run id: enough to tell runs apart in a table. */
export function shortId(id) {
  return id ? id.slice(0, 8) + "…" + id.slice(-4) : "";
}

/** An ISO 8601 instant from the API ("2027-01-31T01:30:00Z") as seconds since the epoch; null when missing. */
export function parseInstant(text) {
  if (!text) return null;
  const milliseconds = Date.parse(text);
  return Number.isNaN(milliseconds) ? null : milliseconds / 1000;
}

/** Seconds since the epoch in UTC, to the second: "2027-01-31 01:30:00 UTC"; "—" when missing. */
export function formatUtc(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return `${new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** The browser's own time zone ("Europe/Zurich"), which `formatTime` shows times in. */
export function localZone() {
  return DATE_TIME.resolvedOptions().timeZone ?? "local";
}

/** A formatter like `formatTime`'s in another IANA time zone; null when the browser does not know the zone. */
export function timeFormatIn(timeZone) {
  try {
    return new Intl.DateTimeFormat(undefined, { ...DATE_TIME_OPTIONS, timeZone });
  } catch {
    return null;
  }
}
