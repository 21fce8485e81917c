// Time travel: the facts matching a pattern as the tenant knew them at an instant,
// beside what it knows now.

import { atomKey, atomText, parseArgs } from "./atoms.js";
import { call, resultsOf } from "./api.js";
import { field, h, message, replace, table, when } from "./dom.js";
import { attempt, heading, statusRegion, target } from "./ui.js";

/** ``YYYY-MM-DDTHH:MM:SS.mmm`` in local time, as a datetime-local input reads it. */
function localInputValue(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T`
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.`
    + `${pad(d.getMilliseconds(), 3)}`;
}

export default {
  id: "recall",
  title: "Time travel",
  render(root) {
    const t = target();
    root.append(...heading("Time travel",
      "What the tenant knew at an instant: its log replayed up to then, compared with now."));
    if (!t.tenant) {
      root.append(message("note", "Pick a tenant in the bar above."));
      return undefined;
    }
    const start = Date.now() - 60_000;
    const predicate = h("input", { name: "predicate", required: true, spellcheck: false });
    const args = h("input", { name: "args", required: true, spellcheck: false });
    const scope = h("input", { name: "scope", value: t.scope, spellcheck: false });
    const instant = h("input", { name: "instant", type: "datetime-local", step: "0.001",
      value: localInputValue(start), required: true });
    const epoch = h("input", { name: "timestamp", type: "number", min: 0, step: 1,
      value: start, required: true });
    instant.addEventListener("input", () => {
      const ms = new Date(instant.value).getTime();
      if (!Number.isNaN(ms)) epoch.value = ms;
    });
    epoch.addEventListener("input", () => {
      if (epoch.value !== "") instant.value = localInputValue(Number(epoch.value));
    });
    const status = statusRegion();
    const result = h("div", { className: "results" });
    const form = h("form", { className: "card", "aria-label": "Recall at an instant" },
      h("div", { className: "grid" },
        field("Predicate", predicate),
        field("Arguments (pattern)", args, "e.g. ?who, charlie or ?_ for any value"),
        field("Scope (blank: every scope)", scope),
        field("Instant (local time)", instant),
        field("Instant (epoch milliseconds)", epoch)),
      h("button", { type: "submit" }, "Recall"), status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const answer = await attempt(status, async () => {
        const pattern = { predicate: predicate.value.trim(), args: parseArgs(args.value) };
        if (scope.value.trim()) pattern.scope = scope.value.trim();
        const timestamp = Number(epoch.value);
        const [then, now] = await Promise.all([
          call("POST", "/memory/recall", { tenant: true, body: { ...pattern, timestamp } }),
          call("POST", "/query", { tenant: true, body: pattern }),
        ]);
        return { timestamp, then: resultsOf(then), now: resultsOf(now) };
      });
      if (!answer) return;
      const nowKeys = new Set(answer.now.map(atomKey));
      const thenKeys = new Set(answer.then.map(atomKey));
      const rows = answer.then.map((f) => [h("code", { className: "atom" }, atomText(f)),
        f.scope, when(f.createdAt), nowKeys.has(atomKey(f)) ? "still known" : "gone since"]);
      for (const f of answer.now) {
        if (!thenKeys.has(atomKey(f))) {
          rows.push([h("code", { className: "atom" }, atomText(f)), f.scope, when(f.createdAt),
            "not yet known then"]);
        }
      }
      replace(result,
        h("p", { className: "count", role: "status" },
          `${answer.then.length} facts at ${when(answer.timestamp)}; ${answer.now.length} now`),
        rows.length ? table("Then and now", ["fact", "scope", "told", "now"], rows) : null);
    });
    root.append(form, result);
    return undefined;
  },
};
