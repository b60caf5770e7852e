// The pages of the dashboard: one module per page, one line per route.
//
// A page module exports `render(main, params)`, which fills `main` and may return a function
// that the router calls when the page is left (to stop watching events or timers).
// To add a page (pipelines, ...), write its module next to
// these and add its route here; `nav` puts it in the top bar, `section` names the top-bar
// entry a page without one of its own belongs to.

export const routes = [
  { path: /^\/$/, nav: "Overview", href: "#/", load: () => import("./overview.js") },
  { path: /^\/tasks(?:\/([^/]+))?$/, nav: "Tasks", href: "#/tasks", load: () => import("./tasks.js") },
  { path: /^\/runs$/, nav: "Runs", href: "#/runs", load: () => import("./runs.js") },
  { path: /^\/runs\/([^/]+)$/, section: "#/runs", load: () => import("./run.js") },
  { path: /^\/services$/, nav: "Services", href: "#/services", load: () => import("./services.js") },
  { path: /^\/workflows$/, nav: "Workflows", href: "#/workflows", load: () => import("./workflows.js") },
  { path: /^\/workflows\/([^/]+)$/, section: "#/workflows", load: () => import("./workflow.js") },
  { path: /^\/packages$/, nav: "Packages", href: "#/packages", load: () => import("./packages.js") },
  { path: /^\/pipelines$/, nav: "Pipelines", href: "#/pipelines", load: () => import("./pipelines.js") },
  { path: /^\/workers$/, nav: "Workers", href: "#/workers", load: () => import("./workers.js") },
  { path: /^\/schedules$/, nav: "Schedules", href: "#/schedules", load: () => import("./schedules.js") },
  { path: /^\/schedules\/([^/]+)$/, section: "#/schedules", load: () => import("./schedule.js") },
];

/** Where "#/" and unknown addresses lead. */
export const home = "#/";
