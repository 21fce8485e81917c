// The context window an agent would get for some goals, ranked by salience, and what
// /context/diff would send next for the same session.

import { atomText, parseGoal } from "./atoms.js";
import { call } from "./api.js";
import { field, h, message, replace, table, uid } from "./dom.js";
import { attempt, heading, statusRegion, target } from "./ui.js";

// One console session per page load: showing a window makes it this session's last
// window, so "Next diff" answers exactly what an agent holding it would receive.
const CONSOLE_SESSION = `console-${Math.random().toString(36).slice(2, 10)}`;

function salienceBar(value) {
  const label = value === null || value === undefined ? "—" : value.toFixed(4);
  return h("span", { className: "salience" },
    h("meter", { min: 0, max: 1, value: value ?? 0, "aria-label": `salience ${label}` }),
    h("span", { className: "number" }, label));
}

function provenanceText(entry) {
  const p = entry.provenance;
  if (!p) return "—";
  const parts = [];
  if (p.rule) parts.push(`rule ${p.rule}`);
  if (p.premises && p.premises.length) parts.push(`from ${p.premises.join("; ")}`);
  if (p.supports && p.supports.length) parts.push(`supports ${p.supports.join("; ")}`);
  return parts.join(" · ") || "stored answer";
}

function entriesTable(caption, entries) {
  return table(caption, ["fact", "salience", "category", "scope", "provenance"],
    entries.map((e) => [h("code", { className: "atom" }, atomText(e)), salienceBar(e.salience),
      e.category, e.scope ?? "—", provenanceText(e)]));
}

function windowView(w) {
  return [
    h("p", { className: "count", role: "status" },
      `${w.totalFactsIncluded} entries from ${w.totalFactsAvailable} stored facts · `
      + `~${w.tokenEstimate} tokens`
      + ` · ${w.goalDriven ? "goal-driven" : "by salience"} · knowledge generation `
      + `${w.knowledgeGeneration}`),
    w.entries.length ? entriesTable("Context window", w.entries)
      : message("note", "The window is empty."),
    w.contradictions.length
      ? h("div", null, h("h4", null, "Contradictions"),
        h("ul", null, w.contradictions.map((c) => h("li", null,
          h("code", null, atomText(c)), ` in ${c.scope}: salience ${c.positiveSalience} vs `
          + `NOT ${c.negativeSalience}`))))
      : null,
    w.relevantRules.length
      ? h("div", null, h("h4", null, "Relevant rules"),
        h("ul", null, w.relevantRules.map((r) => h("li", null, h("code", null, r)))))
      : null,
    h("details", null, h("summary", null, "Text sent to the model"),
      h("pre", { className: "text" }, w.formattedText)),
  ];
}

function diffView(d) {
  return [
    h("p", { className: "count", role: "status" },
      `${d.added.length} added · ${d.removed.length} removed · ${d.unchanged} unchanged`
      + (d.fullRefreshRecommended ? " · full refresh recommended" : "")),
    d.reason ? h("p", { className: "intro" }, d.reason) : null,
    d.added.length ? entriesTable("Would be added", d.added) : null,
    d.removed.length
      ? h("div", null, h("h4", null, "Would be removed"),
        h("ul", null, d.removed.map((r) => h("li", null, h("code", null, atomText(r))))))
      : null,
    h("details", null, h("summary", null, "Text the diff sends"),
      h("pre", { className: "text" }, d.formattedText)),
  ];
}

export default {
  id: "context",
  title: "Context",
  render(root) {
    const t = target();
    root.append(...heading("Context window",
      "The facts an agent is given for some goals, ranked by salience, and what "
      + "/context/diff sends on the next turn of the same session."));
    if (!t.tenant) {
      root.append(message("note", "Pick a tenant in the bar above."));
      return undefined;
    }
    const goals = h("textarea", { name: "goals", rows: 3, spellcheck: false });
    const maxFacts = h("input", { name: "maxFacts", type: "number", min: 1, max: 1000,
      value: 25 });
    const scope = h("input", { name: "scope", value: t.scope, spellcheck: false });
    const sessionId = h("input", { name: "sessionId", value: CONSOLE_SESSION, required: true,
      spellcheck: false });
    const status = statusRegion();
    const result = h("div", { className: "results" });
    const titleId = uid("ctx");

    function body() {
      const lines = goals.value.split("\n").map((l) => l.trim()).filter(Boolean);
      const request = {
        maxFacts: Number(maxFacts.value) || 25,
        sessionId: sessionId.value.trim(),
      };
      if (lines.length) request.goals = lines.map(parseGoal);
      if (scope.value.trim()) request.scope = scope.value.trim();
      return request;
    }

    const form = h("form", { className: "card", "aria-labelledby": titleId },
      h("h3", { id: titleId }, "Window request"),
      h("div", { className: "grid" },
        field("Goals (one per line, optional)", goals, "e.g. grandparent(?x, charlie)"),
        field("Max facts", maxFacts),
        field("Scope (blank: every scope)", scope),
        field("Session id", sessionId,
          "Showing a window or a diff makes it this session's last window")),
      h("div", { className: "actions" },
        h("button", { type: "submit", value: "window" }, "Show window"),
        h("button", { type: "submit", value: "diff" }, "Next diff")),
      status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const wantDiff = event.submitter && event.submitter.value === "diff";
      const answer = await attempt(status, () => call("POST",
        wantDiff ? "/context/diff" : "/context/optimize", { tenant: true, body: body() }));
      if (!answer) return;
      replace(result, h("h3", null, wantDiff ? "Next diff" : "Window"),
        wantDiff ? diffView(answer) : windowView(answer));
      result.scrollIntoView({ block: "start" });
    });
    root.append(form, result);
    return undefined;
  },
};
