// Live events from the server over Server-Sent Events: one connection shared by every page.
//
// Each event carries JSON. Its name is the SSE event name, or the `type` / `kind` field of an
// unnamed event's data; `describe` tells from both what the event is about. While the connection is down, pages
// that watch events are refreshed on a timer instead, so they never show stale state for long.

import { API, UNAUTHORIZED } from "./api.js";
import { openStream } from "./sse.js";

const POLL_MS = 2000;
const RETRY_MS = 5000; // after the server refused the stream
const RECONNECT_MS = 1000; // after an open stream ended

const handlers = new Map(); // kind -> Set of functions
const refreshers = new Set();
let source = null; // the open stream: { close }
let live = false;
let pollTimer = null;
let retryTimer = null;
let indicator = null;

const RUN_EVENTS = new Set(["submitted", "started", "progress", "retrying", "finished", "cancelled", "log"]);

/**
 * What an event is about, whatever its exact form: {name, kinds, run, runId, line, service}.
 * `kinds` holds "run" (a run changed), "log" (a run logged a line) and "service" as they apply;
 * an event named "run.updated", "run" or an engine's run event ("started", "finished", ...)
 * counts as a run event, and so does any event that carries a run.
 */
export function describe(name, data) {
  const payload = data && typeof data === "object" ? data : {};
  const kinds = new Set();
  const base = String(name).split(/[._:]/)[0];
  if (base) kinds.add(base);
  const looksLikeRun = (value) => value && typeof value === "object" && "task" in value && "status" in value && "id" in value;
  const run = looksLikeRun(payload.run) ? payload.run : looksLikeRun(payload) ? payload : null;
  const line = payload.line && typeof payload.line === "object" ? payload.line : base === "log" || String(name).endsWith("log") ? payload : null;
  const runId = run?.id ?? line?.run_id ?? payload.run_id ?? null;
  if (RUN_EVENTS.has(String(payload.kind ?? name)) || run || runId) kinds.add("run");
  if (line) kinds.add("log");
  const service = payload.service && typeof payload.service === "object" ? payload.service : base === "service" ? payload : null;
  if (service) kinds.add("service");
  return { name: String(name), kinds, run, runId, line, service, data: payload };
}

function dispatch(name, data) {
  if (name === "lagged") {
    // The server dropped events this page read too slowly: what it shows may be stale.
    for (const refresh of refreshers) refresh();
    return;
  }
  const event = describe(name, data);
  const called = new Set();
  for (const kind of event.kinds) {
    for (const handler of handlers.get(kind) ?? []) {
      if (called.has(handler)) continue;
      called.add(handler);
      handler(event);
    }
  }
}

function onMessage(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return; // a comment or keep-alive line
  }
  const name = event.type !== "message" ? event.type : data?.type ?? data?.event ?? data?.kind ?? "message";
  dispatch(name, data);
}

function setState(state) {
  if (indicator) {
    indicator.dataset.state = state;
    indicator.textContent = { open: "live", connecting: "connecting", error: "reconnecting" }[state];
  }
  if (state === "open") stopPolling();
  else startPolling();
}

function startPolling() {
  if (pollTimer !== null) return;
  pollTimer = setInterval(() => {
    for (const refresh of refreshers) refresh();
  }, POLL_MS);
}

function stopPolling() {
  if (pollTimer !== null) clearInterval(pollTimer);
  pollTimer = null;
}

/** Open the shared connection (again, after the token changed); `element` shows its state. */
export function connect(element = indicator) {
  indicator = element;
  if (retryTimer !== null) clearTimeout(retryTimer);
  retryTimer = null;
  source?.close();
  live = false;
  setState("connecting");
  // Read with fetch, not EventSource: the token goes in the Authorization header, never in the URL.
  const stream = openStream(`${API}/events`, {
    onOpen: () => {
      live = true;
      setState("open");
    },
    onEvent: (name, data) => onMessage({ type: name, data }),
    onEnd: (status) => {
      if (source !== stream) return;
      live = false;
      setState("error");
      // A refused token (revoked, say): the app asks for another one.
      if (status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
      if (retryTimer === null) {
        retryTimer = setTimeout(() => ((retryTimer = null), connect()), status ? RETRY_MS : RECONNECT_MS);
      }
    },
  });
  source = stream;
}

/** Close the connection and stop polling (no token, or a refused one). */
export function disconnect() {
  if (retryTimer !== null) clearTimeout(retryTimer);
  retryTimer = null;
  source?.close();
  source = null;
  live = false;
  stopPolling();
  if (indicator) {
    indicator.dataset.state = "off";
    indicator.textContent = "not signed in";
  }
}

/** Whether events arrive now (pages need not poll). */
export function isLive() {
  return source !== null && live;
}

/**
 * Call `handler(event)` (see `describe`) for each event of these kinds, and `refresh()` on a timer while the
 * connection is down. Returns the function that stops both.
 */
export function watch(kinds, handler, refresh) {
  for (const kind of kinds) {
    if (!handlers.has(kind)) handlers.set(kind, new Set());
    handlers.get(kind).add(handler);
  }
  if (refresh) refreshers.add(refresh);
  return () => {
    for (const kind of kinds) handlers.get(kind)?.delete(handler);
    if (refresh) refreshers.delete(refresh);
  };
}
