// The console's entry point: sign-in, the database/tenant/scope bar, navigation.

import { call, scopeDetails, session } from "./api.js";
import { h, replace } from "./dom.js";
import { describe, target } from "./ui.js";
import ask from "./view-ask.js";
import audit from "./view-audit.js";
import context from "./view-context.js";
import databases from "./view-databases.js";
import facts from "./view-facts.js";
import health from "./view-health.js";
import recall from "./view-recall.js";
import rules from "./view-rules.js";
import scopes from "./view-scopes.js";

const VIEWS = [facts, rules, ask, scopes, context, recall, databases, audit, health];
const $ = (id) => document.getElementById(id);

const state = { who: null, dispose: null };

function showLogin(problem) {
  $("shell").hidden = true;
  $("sign-out").hidden = true;
  $("identity").textContent = "";
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !problem;
  error.textContent = problem || "";
  $("login-key").focus();
}

function identityText(who) {
  if (!who.authEnabled) return "Authentication off: full access (loopback only)";
  const scope = [];
  scope.push(who.databases.length ? `databases ${who.databases.join(", ")}` : "every database");
  scope.push(who.tenants.length ? `tenants ${who.tenants.join(", ")}` : "every tenant");
  return `Key “${who.name}” · ${who.role} · ${scope.join(" · ")}`;
}

function can(permission) {
  return Boolean(state.who && state.who.permissions.includes(permission));
}

function fillOptions(listId, names) {
  replace($(listId), [...new Set(names)].sort().map((name) => h("option", { value: name })));
}

/** Offer the names this key may use: listed by the API when it may list them. */
async function refreshNames() {
  const who = state.who;
  const picked = target();
  // Names that arrive after a sign-out or a change of target are dropped, so one
  // key's names never show up in the lists offered to the next.
  const current = () => state.who === who
    && JSON.stringify(target()) === JSON.stringify(picked);
  let dbNames = who.databases;
  if (can("database_list")) {
    try {
      dbNames = (await call("GET", "/databases")).databases.map((d) => d.name);
    } catch {
      dbNames = who.databases;
    }
  }
  if (!current()) return;
  fillOptions("database-names", dbNames);
  let tenantNames = who.tenants;
  if (can("tenant_list") && picked.database) {
    try {
      const answer = await call("GET",
        `/admin/databases/${encodeURIComponent(picked.database)}/tenants`);
      tenantNames = answer.tenants.map((t) => t.name);
    } catch {
      tenantNames = who.tenants;
    }
  }
  if (!current()) return;
  fillOptions("tenant-names", tenantNames);
  let scopeNames = [];
  if (picked.tenant) {
    try {
      scopeNames = scopeDetails(await call("GET", "/scopes", { tenant: true })).map((s) => s.name);
    } catch {
      scopeNames = [];
    }
  }
  if (!current()) return;
  fillOptions("scope-names", scopeNames);
}

function showTarget() {
  const t = target();
  $("target-database").value = t.database;
  $("target-tenant").value = t.tenant;
  $("target-scope").value = t.scope;
}

/** Point the console at another database/tenant/scope; every view starts afresh. */
export function useTarget(next) {
  session.target = { ...target(), ...next };
  showTarget();
  refreshNames();
  route();
}

async function enter() {
  try {
    state.who = await call("GET", "/auth/whoami");
  } catch (error) {
    if (error.status === 401) session.key = null;
    showLogin(describe(error));
    return;
  }
  const who = state.who;
  $("login").hidden = true;
  $("shell").hidden = false;
  $("identity").textContent = identityText(who);
  $("sign-out").hidden = !who.authEnabled;
  const saved = session.target;
  session.target = {
    database: saved.database || who.databases[0] || "default",
    tenant: saved.tenant || who.tenants[0] || "",
    scope: saved.scope || "",
  };
  showTarget();
  buildNav();
  refreshNames();
  if (!location.hash) history.replaceState(null, "", "#/facts");
  route(true);
}

function buildNav() {
  replace($("nav"), VIEWS.map((view) =>
    h("li", null, h("a", { href: `#/${view.id}`, id: `nav-${view.id}` }, view.title))));
}

function currentView() {
  const id = location.hash.replace(/^#\//, "").split("?")[0];
  return VIEWS.find((v) => v.id === id) || VIEWS[0];
}

function route(initial = false) {
  if (!state.who) return;
  if (state.dispose) {
    state.dispose();
    state.dispose = null;
  }
  const view = currentView();
  for (const other of VIEWS) {
    const link = $(`nav-${other.id}`);
    if (!link) continue;
    if (other === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view.title} · Nocturnus console`;
  // A fresh container per visit: answers still in flight for a previous view or
  // tenant land in a detached node and never reach the page.
  const container = h("section", { className: "view", id: `view-${view.id}` });
  replace($("main"), container);
  const env = { who: state.who, can, useTarget, refreshNames };
  const dispose = view.render(container, env);
  if (typeof dispose === "function") state.dispose = dispose;
  if (!initial) {
    const title = container.querySelector(".view-title");
    if (title) title.focus();
  }
}

function wire() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    session.key = $("login-key").value.trim();
    $("login-key").value = "";
    await enter();
  });
  $("sign-out").addEventListener("click", () => {
    session.key = null;
    sessionStorage.clear();
    state.who = null;
    replace($("main"));
    for (const list of ["database-names", "tenant-names", "scope-names"]) fillOptions(list, []);
    showLogin();
  });
  $("target").addEventListener("submit", (event) => {
    event.preventDefault();
    useTarget({
      database: $("target-database").value.trim(),
      tenant: $("target-tenant").value.trim(),
      scope: $("target-scope").value.trim(),
    });
  });
  window.addEventListener("hashchange", () => route());
  // Choosing the view already open shows it afresh (no hashchange fires then).
  $("nav").addEventListener("click", (event) => {
    const link = event.target.closest("a");
    if (link && link.getAttribute("href") === location.hash) {
      event.preventDefault();
      route();
    }
  });
}

async function start() {
  wire();
  let status;
  try {
    status = await call("GET", "/auth/status");
  } catch (error) {
    replace($("main"), h("p", { className: "error", role: "alert" }, describe(error)));
    $("shell").hidden = false;
    return;
  }
  if (status.authEnabled && !session.key) showLogin();
  else await enter();
}

start();
