// Task packages: each one's version, state, tasks and venv; a package's install log and
// frozen requirements. Admins (or anyone, on a server that needs no token) add, reinstall
// and remove packages; those routes answer 202 at once and the page polls the state.

import { api } from "../api.js";
import { errorNotice, h, replace, statusBadge } from "../dom.js";
import { setQuery } from "../address.js";
import { formatTime } from "../format.js";

const POLL_MS = 1000;
const BUSY = new Set(["pending", "installing"]);

export async function render(main, { query }) {
  let selected = query.get("package") || null;
  let admin = false;
  let timer = null;
  const notice = h("div");
  const body = h("tbody");
  const detail = h("section", { class: "card", id: "package-detail", style: "margin-top: 20px", hidden: true });
  const source = h("input", { id: "package-source", name: "source", placeholder: "NAME[==VERSION], a wheel or a package folder", style: "flex: 1" });
  const addError = h("p", { class: "form-error", id: "package-error", role: "alert" });
  const addForm = h(
    "form",
    { id: "add-package", class: "card", style: "margin-bottom: 20px", hidden: true, novalidate: true },
    h("div", { class: "row" }, h("label", { for: "package-source" }, "Add a package"), source, h("button", { type: "submit", class: "primary" }, "Add")),
    addError,
  );

  replace(
    main,
    h("div", { class: "row page-head" }, h("h1", {}, "Packages")),
    addForm,
    notice,
    h(
      "div",
      { class: "table-wrap" },
      h("table", { id: "packages-table" }, h("thead", {}, h("tr", {}, ["Name", "Version", "State", "Tasks", "Venv"].map((name) => h("th", {}, name)))), body),
    ),
    detail,
  );

  function controls(pkg) {
    if (!admin) return null;
    const busy = BUSY.has(pkg.state);
    const button = (label, action, extra = {}) =>
      h("button", { type: "button", disabled: busy, ...extra, onclick: () => act(action) }, label);
    return h(
      "div",
      { class: "row" },
      button("Reinstall", () => api.reinstallPackage(pkg.name), { id: "reinstall-package" }),
      button("Remove", () => api.removePackage(pkg.name), { id: "remove-package", class: "danger" }),
    );
  }

  async function act(action) {
    try {
      await action();
      replace(notice);
    } catch (error) {
      replace(notice, errorNotice(error));
    }
    await load();
  }

  async function drawDetail() {
    if (!selected) {
      detail.hidden = true;
      return null;
    }
    let pkg;
    try {
      pkg = await api.getPackage(selected);
    } catch (error) {
      detail.hidden = false;
      replace(detail, h("h2", {}, selected), errorNotice(error));
      return null;
    }
    detail.hidden = false;
    replace(
      detail,
      h("div", { class: "row" }, h("h2", {}, pkg.name), h("span", { id: "package-state" }, statusBadge(pkg.state)), h("span", { class: "spacer" }), controls(pkg)),
      pkg.error ? h("p", { class: "notice error", id: "package-failure" }, pkg.error) : null,
      h(
        "dl",
        { class: "facts" },
        [
          ["Version", pkg.version ?? "—"],
          ["Source", h("span", { class: "mono" }, pkg.source ?? "")],
          ["Venv", h("span", { class: "mono" }, pkg.venv ?? "—")],
          ["Tasks", pkg.tasks?.length ? pkg.tasks.map((task) => h("a", { href: `#/tasks/${encodeURIComponent(task)}`, class: "mono", style: "margin-right: 8px" }, task)) : "—"],
          ["Updated", formatTime(pkg.updated_at)],
        ].map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
      ),
      h("h3", {}, "Install log"),
      h("pre", { class: "block", id: "package-log" }, pkg.log || "(empty)"),
      h("h3", {}, "Frozen requirements"),
      h("pre", { class: "block", id: "package-frozen" }, pkg.frozen?.length ? pkg.frozen.join("\n") : "(none: the package is not installed)"),
    );
    return pkg;
  }

  async function load() {
    let packages;
    try {
      packages = await api.listPackages();
      replace(notice);
    } catch (error) {
      replace(notice, errorNotice(error));
      return;
    }
    if (selected && !packages.some((p) => p.name === selected)) selected = null;
    replace(
      body,
      packages.length
        ? packages.map((pkg) =>
            h(
              "tr",
              { "data-package": pkg.name, "aria-selected": pkg.name === selected ? "true" : null },
              h("td", { class: "mono" }, h("a", { href: `#/packages?package=${encodeURIComponent(pkg.name)}`, onclick: (event) => (event.preventDefault(), select(pkg.name)) }, pkg.name)),
              h("td", {}, pkg.version ?? "—"),
              h("td", {}, statusBadge(pkg.state)),
              h("td", { class: "mono" }, pkg.tasks?.length ? pkg.tasks.join(", ") : "—"),
              h("td", { class: "mono" }, pkg.venv ?? "—"),
            ),
          )
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No packages: add one with ", h("code", {}, "taskloom package add"), admin ? " or above." : ".")),
    );
    await drawDetail();
    // An install runs on the server while the page polls until every package has settled.
    if (timer !== null) clearTimeout(timer);
    timer = packages.some((pkg) => BUSY.has(pkg.state)) ? setTimeout(() => ((timer = null), load()), POLL_MS) : null;
  }

  function select(name) {
    selected = name;
    setQuery({ package: name });
    load();
  }

  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    addError.textContent = "";
    const text = source.value.trim();
    if (!text) {
      addError.textContent = "source: a package name, a wheel file or a package folder";
      return;
    }
    try {
      const pkg = await api.addPackage(text);
      source.value = "";
      select(pkg.name);
    } catch (error) {
      addError.textContent = error.fields?.length ? error.fields.map((e) => `${e.field}: ${e.message}`).join("; ") : error.message;
    }
  });

  try {
    admin = await api.isAdmin();
  } catch {
    admin = false;
  }
  addForm.hidden = !admin;
  await load();
  return () => {
    if (timer !== null) clearTimeout(timer);
  };
}
