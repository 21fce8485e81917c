// The audit trail (/admin/audit): who did what, oldest first, a page at a time.
// It needs an admin key without database/tenant limits; others see the API's refusal.

import { call } from "./api.js";
import { field, h, message, replace, table, when } from "./dom.js";
import { attempt, heading, statusRegion } from "./ui.js";

const PAGE_SIZE = 50;

function actorText(actor) {
  if (!actor) return "—";
  const who = actor.name ? `${actor.name} (${actor.role})` : "unknown key";
  return actor.client ? `${who} from ${actor.client}` : who;
}

export default {
  id: "audit",
  title: "Audit",
  render(root) {
    root.append(...heading("Audit trail",
      "Keys, databases and tenants created or deleted, backups, failed and denied access."));
    const since = h("input", { name: "since", type: "datetime-local" });
    const action = h("input", { name: "action", type: "search", spellcheck: false });
    const status = statusRegion();
    const result = h("div", { className: "results" });
    const pager = h("div", { className: "pager" });
    const pages = { after: [0], index: 0 };

    async function load() {
      const sinceMs = since.value ? new Date(since.value).getTime() : 0;
      const answer = await attempt(status, () => call("GET", "/admin/audit", {
        query: { since: sinceMs, after: pages.after[pages.index], limit: PAGE_SIZE },
      }));
      if (!answer) {
        replace(result);
        replace(pager);
        return;
      }
      const needle = action.value.trim().toLowerCase();
      const events = answer.events.filter((e) => !needle
        || e.action.toLowerCase().includes(needle));
      replace(result, events.length
        ? table("Audit entries", ["seq", "when", "action", "outcome", "actor", "target",
          "details"], events.map((e) => [String(e.seq), when(e.at), e.action, e.outcome,
          actorText(e.actor), e.target ?? "—",
          e.details ? h("code", { className: "details" }, JSON.stringify(e.details)) : "—"]))
        : message("note", "No audit entries on this page."));
      const hasNext = answer.count === PAGE_SIZE && answer.next !== null;
      replace(pager,
        h("button", { type: "button", disabled: pages.index === 0,
          onclick: () => { pages.index -= 1; load(); } }, "Previous page"),
        h("span", { className: "count" }, `Page ${pages.index + 1}`),
        h("button", { type: "button", disabled: !hasNext, onclick: () => {
          pages.after[pages.index + 1] = answer.next;
          pages.index += 1;
          load();
        } }, "Next page"));
    }

    const form = h("form", { className: "inline", "aria-label": "Filter the audit trail" },
      field("Since", since), field("Action contains", action),
      h("button", { type: "submit" }, "Show"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      pages.after = [0];
      pages.index = 0;
      load();
    });
    root.append(form, status, result, pager);
    load();
    return undefined;
  },
};
