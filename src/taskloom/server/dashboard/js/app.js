// The dashboard's shell: the top bar, the live-events indicator and the hash router.
// Addresses are "#/tasks", "#/runs?status=failed", "#/runs/<id>", "#/services".

import { UNAUTHORIZED, api, getToken, setToken } from "./api.js";
import { errorNotice, h, replace } from "./dom.js";
import { connect, disconnect } from "./events.js";
import { home, routes } from "./pages/index.js";

const main = document.getElementById("page");
const nav = document.getElementById("nav");
let leave = null;
let generation = 0;

/** The current address: its path, its query parameters and the route it matches. */
function currentAddress() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  for (const route of routes) {
    const match = path.match(route.path);
    if (match) {
      const args = match.slice(1).map((arg) => (arg === undefined ? arg : decodeURIComponent(arg)));
      return { route, path, args, query: new URLSearchParams(search) };
    }
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
  const current = currentAddress();
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
    // Each page draws into an element of its own: when the page is left (or replaced by
    // the sign-in form) while it still waits for the API, what it draws late goes nowhere.
    const view = h("div", { class: "view" });
    replace(main, view);
    const cleanup = await page.render(view, { args: current.args, query: current.query, isCurrent: () => mine === generation });
    if (mine === generation) leave = typeof cleanup === "function" ? cleanup : null;
    else if (typeof cleanup === "function") cleanup();
  } catch (error) {
    if (mine === generation) replace(main, errorNotice(error));
  }
}

const account = document.getElementById("account");
let signingIn = false;

function drawAccount() {
  replace(
    account,
    getToken()
      ? h("button", { type: "button", id: "sign-out", onclick: () => signOut() }, "Sign out")
      : null,
  );
}

function signOut() {
  setToken(null);
  drawAccount();
  connect();
  show();
}

/** The server wants a token: ask for one, in place of the page. */
function askForToken() {
  if (signingIn) return;
  signingIn = true;
  generation++;
  if (leave) leave();
  leave = null;
  disconnect();
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", style: "width: 100%" });
  const message = h("p", { class: "form-error", role: "alert", id: "token-error" });
  const hadToken = getToken() !== null;
  if (hadToken) message.textContent = "The server refused this token: it is unknown or revoked.";
  setToken(null);
  drawAccount();

  async function submit(event) {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      message.textContent = "Paste a token first.";
      return;
    }
    setToken(token);
    signingIn = false;
    try {
      await api.health();
      await api.listTasks(); // any read needs a valid token
    } catch (error) {
      if (signingIn) return; // refused: askForToken drew the form again
      message.textContent = error.message;
      signingIn = true;
      return;
    }
    drawAccount();
    connect();
    show();
  }

  replace(
    main,
    h(
      "section",
      { class: "card", style: "max-width: 480px; margin: 40px auto" },
      h("h1", {}, "Sign in"),
      h("p", {}, "This server needs a token. Make one with ", h("code", {}, "taskloom token create --role operator"), " and paste it here; it is kept for this browser tab only."),
      h(
        "form",
        { id: "sign-in-form", onsubmit: submit, novalidate: true },
        h("div", { class: "field" }, h("label", { for: "token" }, "Token"), input, message),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, "Sign in")),
      ),
    ),
  );
  input.focus();
}

window.addEventListener(UNAUTHORIZED, askForToken);
window.addEventListener("hashchange", () => {
  if (!signingIn) show();
});
drawAccount();
connect(document.getElementById("live"));
show();
