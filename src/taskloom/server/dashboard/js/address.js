// The query part of the dashboard's address ("#/runs?status=failed"), kept in step with filters.

/** Change the query part of the current address without adding a history entry per keystroke. */
export function setQuery(params) {
  const [path] = (window.location.hash.replace(/^#/, "") || "/").split("?");
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  history.replaceState(null, "", `#${path}${text ? `?${text}` : ""}`);
}
