// The HTTP API under /api: one function per operation the pages use, and one error type.
// The dashboard has no logic of its own; everything it shows comes from these calls.

export const API = "/api";

/** A request the API refused or could not serve. `fields` holds per-field errors of a 422. */
export class ApiError extends Error {
  constructor(status, message, fields = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.fields = fields;
  }
}

/**
 * Per-field errors from a 422 body, as [{field, message}], whichever form the body takes:
 * taskloom's own ({"errors": [{field, message}]}, possibly under "detail") or the
 * request-shape form of FastAPI ({"detail": [{loc, msg}]}).
 */
export function fieldErrors(body) {
  const found = [];
  const visit = (value) => {
    if (!value || typeof value !== "object") return;
    if (Array.isArray(value)) {
      for (const item of value) {
        if (item && typeof item === "object" && "field" in item && "message" in item) {
          found.push({ field: String(item.field), message: String(item.message) });
        } else if (item && typeof item === "object" && Array.isArray(item.loc) && "msg" in item) {
          found.push({ field: dottedLocation(item.loc), message: String(item.msg) });
        }
      }
      return;
    }
    for (const key of ["error", "errors", "detail", "fields"]) {
      if (key in value) visit(value[key]);
    }
  };
  visit(body);
  return found;
}

// FastAPI's `loc` starts with where the value was ("body", "query") and, for run inputs,
// the name of the body field ("inputs"); the rest is the path inside the inputs.
function dottedLocation(loc) {
  const parts = [...loc];
  if (parts[0] === "body" || parts[0] === "query" || parts[0] === "path") parts.shift();
  if (parts[0] === "inputs" || parts[0] === "config") parts.shift();
  let text = "";
  for (const part of parts) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text ? `.${part}` : String(part);
  }
  return text || "(inputs)";
}

function messageOf(body, status, statusText) {
  if (body && typeof body === "object") {
    for (const key of ["message", "error", "detail"]) {
      const value = body[key];
      if (typeof value === "string") return value;
      if (value && typeof value === "object" && typeof value.message === "string") return value.message;
    }
    const fields = fieldErrors(body);
    if (fields.length) return fields.map((e) => `${e.field}: ${e.message}`).join("; ");
  }
  if (typeof body === "string" && body) return body;
  return `${status} ${statusText}`.trim();
}

// A token from `taskloom token create`, for servers that require one. It is kept for the
// browser tab only (sessionStorage), and sent as `Authorization: Bearer`.
const TOKEN_KEY = "taskloom.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || null;
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Fired on `window` when the API answers 401: the app asks for a token. */
export const UNAUTHORIZED = "taskloom:unauthorized";

/** Call the API; returns the decoded JSON body, throws ApiError on any non-2xx answer. */
export async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  const token = getToken();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (error) {
    throw new ApiError(0, `the server cannot be reached (${error.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
  if (!response.ok) {
    throw new ApiError(response.status, messageOf(data, response.status, response.statusText), fieldErrors(data));
  }
  return data;
}

/** A list from a body that is either a list or an object holding one ("items", "tasks", ...). */
export function listOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of [...keys, "items", "data"]) {
    if (body && Array.isArray(body[key])) return body[key];
  }
  return [];
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const enc = encodeURIComponent;

export const api = {
  health: () => request("GET", "/health"),

  listTasks: async () => listOf(await request("GET", "/tasks"), "tasks"),
  getTask: (name) => request("GET", `/tasks/${enc(name)}`),

  /** {items, next_cursor} whatever the body's exact form. */
  listRuns: async (filters = {}) => {
    const body = await request("GET", `/runs${query(filters)}`);
    return {
      items: listOf(body, "runs"),
      next: (body && !Array.isArray(body) && (body.next_cursor ?? body.cursor ?? body.next)) || null,
    };
  },
  /** `options`: `priority`, `idempotency_key` (left out when not given). */
  submitRun: (task, inputs, options = {}) => request("POST", "/runs", { task, inputs, ...options }),
  getRun: (id) => request("GET", `/runs/${enc(id)}`),
  cancelRun: (id) => request("POST", `/runs/${enc(id)}/cancel`),
  getAttempts: async (id) => listOf(await request("GET", `/runs/${enc(id)}/attempts`), "attempts"),
  getLogs: async (id, after = 0) =>
    listOf(await request("GET", `/runs/${enc(id)}/logs${query({ after_id: after || null })}`), "logs", "lines"),

  listServices: async () => listOf(await request("GET", "/services"), "services"),
  getService: (name) => request("GET", `/services/${enc(name)}`),
  startService: (name, config) =>
    request("POST", `/services/${enc(name)}/start`, config === undefined ? {} : { config }),
  stopService: (name) => request("POST", `/services/${enc(name)}/stop`),
  getServiceLogs: async (name, after = 0) =>
    listOf(await request("GET", `/services/${enc(name)}/logs${query({ after_id: after || null })}`), "lines"),
  restartService: (name, config) =>
    request("POST", `/services/${enc(name)}/restart`, config === undefined ? {} : { config }),
  getServiceAttributes: (name) => request("GET", `/services/${enc(name)}/attributes`),
  setServiceAttributes: (name, values) => request("PATCH", `/services/${enc(name)}/attributes`, values),
  getServiceAttributeChanges: async (name, limit = 20) =>
    listOf(await request("GET", `/services/${enc(name)}/attributes/changes${query({ limit })}`), "changes"),

  /** `workflow`: the data form, as an object or as YAML/JSON text. */
  submitWorkflow: (workflow, inputs) => request("POST", "/workflows", inputs === undefined ? { workflow } : { workflow, inputs }),
  /** {run, workflow, steps}. */
  getWorkflow: (id) => request("GET", `/workflows/${enc(id)}`),
  rerunWorkflow: (id) => request("POST", `/workflows/${enc(id)}/rerun`),
  cancelWorkflow: (id) => request("POST", `/workflows/${enc(id)}/cancel`),

  /**
   * Runs finished in the last `window` ("15m", "1h", "6h", "1d", "7d"), counted per bucket
   * by status, with totals, failure rate, durations per task, and what is pending and
   * running now; `task` narrows it to one task.
   */
  getStats: (window = "1h", task = null) => request("GET", `/stats${query({ window, task })}`),

  /** Every worker recorded on the database, alive or lost, oldest first. */
  listWorkers: async () => listOf(await request("GET", "/workers"), "workers"),

  listPackages: async () => listOf(await request("GET", "/packages"), "packages"),
  /** The package with its install `log`. */
  getPackage: (name) => request("GET", `/packages/${enc(name)}`),
  addPackage: (source, pipArgs = []) => request("POST", "/packages", { source, pip_args: pipArgs }),
  reinstallPackage: (name) => request("POST", `/packages/${enc(name)}/reinstall`),
  removePackage: (name) => request("DELETE", `/packages/${enc(name)}`),

  /** Every schedule (task options' and stored ones), by name, each with its next fires. */
  listSchedules: async () => listOf(await request("GET", "/schedules"), "schedules"),
  /** A schedule, its `next_fires` (five, ISO 8601 UTC; none while paused) and its last `runs`, newest first. */
  getSchedule: (name) => request("GET", `/schedules/${enc(name)}`),
  pauseSchedule: (name) => request("POST", `/schedules/${enc(name)}/pause`),
  resumeSchedule: (name) => request("POST", `/schedules/${enc(name)}/resume`),
  /** {idempotency_key} of the run asked for; a worker serving the task starts it. */
  triggerSchedule: (name) => request("POST", `/schedules/${enc(name)}/trigger`),

  /** The caller's role: "viewer", "operator" or "admin" (a server that needs no token lets anyone act as admin). */
  role: async () => {
    const health = await request("GET", "/health");
    if (!health?.auth && !getToken()) return "admin";
    const caller = await request("GET", "/whoami");
    return caller?.role ?? "viewer";
  },
  /** Whether the caller may do what admins do. */
  isAdmin: async () => (await api.role()) === "admin",
  /** Whether the caller may do what operators do (admins may too). */
  isOperator: async () => ["operator", "admin"].includes(await api.role()),
};
