// The dashboard's shell: the top bar, the live-events indicator and the hash router.
// Addresses are "#/tasks", "#/runs?status=failed", "#/runs/<id>", "#/services".

import { errorNotice, h, replace } from "./dom.js";
import { connect } from "./events.js";
import { home, routes } from "./pages/index.js";

const main = document.getElementById("page");
const nav = document.getElementById("nav");
let leave = null;
let generation = 0;

/** The current address: its path, its query parameters and the route it matches. */
function location() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  for (const route of routes) {
    const match = path.match(route.path);
    if (match) return { route, path, args: match.slice(1).map((a) => (a === undefined ? a : decodeURIComponent(a))), query: new URLSearchParams(search) };
  }
  return null;
}

function drawNav(current) {
  replace(
    nav,
    routes
      .filter((route) => route.nav)
      .map((route) =>
        h("a", { href: route.href, "aria-current": current && (current.route.section ?? current.route.href) === route.href ? "page" : null }, route.nav),
      ),
  );
}

async function show() {
  const current = location();
  if (!current) {
    window.location.replace(home);
    return;
  }
  const mine = ++generation;
  if (leave) leave();
  leave = null;
  drawNav(current);
  try {
    const page = await current.route.load();
    if (mine !== generation) return; // the address changed while the module loaded
    replace(main);
    const cleanup = await page.render(main, { args: current.args, query: current.query, isCurrent: () => mine === generation });
    if (mine === generation) leave = typeof cleanup === "function" ? cleanup : null;
    else if (typeof cleanup === "function") cleanup();
  } catch (error) {
    if (mine === generation) replace(main, errorNotice(error));
  }
}

window.addEventListener("hashchange", show);
connect(document.getElementById("live"));
show();
