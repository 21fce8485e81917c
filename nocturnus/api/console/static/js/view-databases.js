// Databases and their tenants, with counts; create and delete (confirmed by typing the
// name). Listing needs an admin key: any other key sees the API's refusal.

import { call } from "./api.js";
import { field, h, message, replace, table, when } from "./dom.js";
import { attempt, confirmAction, heading, statusRegion, target } from "./ui.js";

const STRATEGIES = ["REJECT", "NEWEST_WINS", "CONFIDENCE", "KEEP_BOTH"];

export default {
  id: "databases",
  title: "Databases",
  render(root, env) {
    const t = target();
    root.append(...heading("Databases and tenants",
      "Each database is a separate encrypted log; tenants are isolated inside it."));
    const dbStatus = statusRegion();
    const dbList = h("div", { className: "results" });
    const tenantTitle = h("h3", null);
    const tenantStatus = statusRegion();
    const tenantList = h("div", { className: "results" });
    const shown = { database: t.database };

    async function loadDatabases() {
      const answer = await attempt(dbStatus, () => call("GET", "/databases"));
      if (!answer) return;
      const rows = answer.databases.map((db) => [
        h("code", null, db.name), String(db.tenants), String(db.events), when(db.createdAt),
        h("span", { className: "row-actions" },
          h("button", { type: "button", className: "quiet small",
            "aria-label": `Show tenants of ${db.name}`,
            onclick: () => { shown.database = db.name; loadTenants(); } }, "Tenants"),
          db.name === "default" ? null : h("button", { type: "button",
            className: "quiet small danger-text", "aria-label": `Delete database ${db.name}`,
            onclick: () => removeDatabase(db.name) }, "Delete")),
      ]);
      replace(dbList, table("Databases", ["database", "tenants", "events", "created", ""],
        rows));
    }

    async function loadTenants() {
      const db = shown.database;
      tenantTitle.textContent = `Tenants of ${db}`;
      tenantDb.value = db;
      const answer = await attempt(tenantStatus,
        () => call("GET", `/admin/databases/${encodeURIComponent(db)}/tenants`));
      if (!answer) {
        replace(tenantList);
        return;
      }
      const rows = answer.tenants.map((tenant) => [
        h("code", null, tenant.name), String(tenant.facts), String(tenant.rules),
        when(tenant.createdAt),
        h("span", { className: "row-actions" },
          h("button", { type: "button", className: "quiet small",
            "aria-label": `Use tenant ${tenant.name} of ${db}`,
            onclick: () => env.useTarget({ database: db, tenant: tenant.name, scope: "" }) },
          "Use"),
          h("button", { type: "button", className: "quiet small danger-text",
            "aria-label": `Delete tenant ${tenant.name} of ${db}`,
            onclick: () => removeTenant(db, tenant.name) }, "Delete")),
      ]);
      replace(tenantList, rows.length
        ? table(`Tenants of ${db}`, ["tenant", "facts", "rules", "created", ""], rows)
        : message("note", "No tenants yet."));
    }

    async function removeDatabase(name) {
      const ok = await confirmAction({
        title: `Delete database ${name}?`,
        text: `The database ${name}, its log and every tenant in it are deleted. `
          + "This cannot be undone.",
        typed: name,
      });
      if (!ok) return;
      const done = await attempt(dbStatus,
        () => call("DELETE", `/admin/databases/${encodeURIComponent(name)}`),
        `Deleted database ${name}`);
      if (done) {
        loadDatabases();
        env.refreshNames();
      }
    }

    async function removeTenant(db, name) {
      const ok = await confirmAction({
        title: `Delete tenant ${name}?`,
        text: `Every fact and rule of ${name} in ${db} becomes unreadable at once (its data `
          + "key is destroyed). This cannot be undone.",
        typed: name,
      });
      if (!ok) return;
      const done = await attempt(tenantStatus,
        () => call("DELETE",
          `/admin/databases/${encodeURIComponent(db)}/tenants/${encodeURIComponent(name)}`),
        (a) => `Deleted tenant ${a.deleted}: ${a.facts} facts, ${a.rules} rules`);
      if (done) {
        loadTenants();
        loadDatabases();
        env.refreshNames();
      }
    }

    // -- create -----------------------------------------------------------------------
    const dbName = h("input", { name: "name", required: true, spellcheck: false,
      pattern: "[A-Za-z0-9_\\-]{1,64}" });
    const strategy = h("select", { name: "defaultConflictStrategy" },
      STRATEGIES.map((s) => h("option", { value: s }, s)));
    const createDbStatus = statusRegion();
    const createDb = h("form", { className: "card", "aria-labelledby": "create-db-title" },
      h("h3", { id: "create-db-title" }, "Create a database"),
      h("div", { className: "grid" }, field("Name", dbName),
        field("Default on contradiction", strategy)),
      h("button", { type: "submit" }, "Create database"), createDbStatus);
    createDb.addEventListener("submit", async (event) => {
      event.preventDefault();
      const done = await attempt(createDbStatus, () => call("POST", "/databases", {
        body: { name: dbName.value.trim(), defaultConflictStrategy: strategy.value },
      }), (a) => (a.created ? `Created ${a.name}` : `${a.name} already exists`));
      if (done) {
        loadDatabases();
        env.refreshNames();
      }
    });

    const tenantDb = h("input", { name: "database", required: true, spellcheck: false,
      list: "database-names", value: t.database });
    const tenantName = h("input", { name: "name", required: true, spellcheck: false,
      pattern: "[A-Za-z0-9_\\-]{1,128}" });
    const createTenantStatus = statusRegion();
    const createTenant = h("form", { className: "card",
      "aria-labelledby": "create-tenant-title" },
      h("h3", { id: "create-tenant-title" }, "Create a tenant"),
      h("div", { className: "grid" }, field("Database", tenantDb), field("Name", tenantName)),
      h("button", { type: "submit" }, "Create tenant"), createTenantStatus);
    createTenant.addEventListener("submit", async (event) => {
      event.preventDefault();
      const db = tenantDb.value.trim();
      const done = await attempt(createTenantStatus, () => call("POST",
        `/admin/databases/${encodeURIComponent(db)}/tenants`,
        { body: { name: tenantName.value.trim() } }),
      (a) => (a.created ? `Created ${a.name} in ${db}` : `${a.name} already exists in ${db}`));
      if (done) {
        shown.database = db;
        loadTenants();
        loadDatabases();
        env.refreshNames();
      }
    });

    // Forms this key may not use are left out; the lists above still show the API's
    // own refusal, so a key's limits are explained where they bite.
    const forms = [env.can("database_create") ? createDb : null,
      env.can("tenant_create") ? createTenant : null].filter(Boolean);
    root.append(dbStatus, dbList, tenantTitle, tenantStatus, tenantList,
      forms.length ? h("div", { className: "forms" }, forms) : null);
    loadDatabases();
    loadTenants();
    return undefined;
  },
};
