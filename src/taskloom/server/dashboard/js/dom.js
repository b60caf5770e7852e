// Building DOM nodes without innerHTML: every text a server sends is set as text, never parsed.

/**
 * h("a", {href: "#/runs", class: "x", onclick: fn}, "text", otherNode, [more, nodes])
 * Attributes starting with "on" become listeners; `null`, `undefined` and `false` are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key in node && typeof value !== "string") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** Replace every child of `node` with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A status badge: `data-status` picks its colour in style.css. */
export function statusBadge(status) {
  return h("span", { class: "status", dataset: { status: status ?? "" } }, status ?? "unknown");
}

/** An error notice for a page that could not load what it shows. */
export function errorNotice(error) {
  return h("p", { class: "notice error", role: "alert" }, error?.message ?? String(error));
}
