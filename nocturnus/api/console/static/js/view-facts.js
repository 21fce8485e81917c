// Facts of a tenant (one scope or every scope): filter, page, tell, forget.

import { anyArgs, atomText, parseArgs } from "./atoms.js";
import { call } from "./api.js";
import { field, h, message, replace, table, when } from "./dom.js";
import { attempt, confirmAction, heading, scopeOrNull, statusRegion, target } from "./ui.js";

export const PAGE_SIZE = 50;
const STRATEGIES = ["", "REJECT", "NEWEST_WINS", "CONFIDENCE", "KEEP_BOTH"];

/** Every stored fact of the picked tenant and scope, positive and negated, sorted. */
async function loadFacts(predicate) {
  const scope = scopeOrNull();
  const stats = await call("GET", "/predicates", { tenant: true, query: { scope } });
  const wanted = stats.predicates.filter((p) => p.factCount > 0
    && (!predicate || p.predicate === predicate));
  const queries = [];
  for (const p of wanted) {
    for (const negated of [false, true]) {
      queries.push(call("POST", "/query", {
        tenant: true,
        body: { predicate: p.predicate, args: anyArgs(p.arity), negated, scope },
      }));
    }
  }
  const answers = await Promise.all(queries);
  const facts = answers.flatMap((a) => a.results);
  facts.sort((a, b) => atomText(a).localeCompare(atomText(b))
    || String(a.scope).localeCompare(String(b.scope)));
  return { facts, predicates: stats.predicates };
}

function matchesArgument(fact, text) {
  if (!text) return true;
  const needle = text.toLowerCase();
  return fact.args.some((a) => String(a).toLowerCase().includes(needle));
}

export default {
  id: "facts",
  title: "Facts",
  render(root) {
    const t = target();
    root.append(...heading("Facts",
      "Stored facts (not derived ones) of the tenant, with their scope and attributes."));
    if (!t.tenant) {
      root.append(message("note", "Pick a tenant in the bar above to see its facts."));
      return undefined;
    }
    const view = { all: [], shown: [], page: 0 };

    // -- filters ------------------------------------------------------------------
    const predicateSelect = h("select", { name: "predicate" },
      h("option", { value: "" }, "every predicate"));
    const argumentInput = h("input", { name: "argument", type: "search", spellcheck: false });
    const filterStatus = statusRegion();
    const filters = h("form", { className: "inline", "aria-label": "Filter facts" },
      field("Predicate", predicateSelect),
      field("Argument contains", argumentInput),
      h("button", { type: "submit" }, "Filter"));
    const results = h("div", { className: "results" });
    const pager = h("div", { className: "pager" });

    function showPage() {
      const start = view.page * PAGE_SIZE;
      const slice = view.shown.slice(start, start + PAGE_SIZE);
      const rows = slice.map((fact) => [
        h("code", { className: "atom" }, atomText(fact)),
        fact.scope,
        fact.confidence === null ? "—" : String(fact.confidence),
        when(fact.createdAt),
        h("button", {
          type: "button",
          className: "quiet small",
          "aria-label": `Forget ${atomText(fact)} in scope ${fact.scope}`,
          onclick: () => forgetFact(fact),
        }, "Forget"),
      ]);
      replace(results, view.shown.length
        ? table(`Facts of ${t.tenant}`, ["fact", "scope", "confidence", "told", ""], rows)
        : message("note", "No stored facts match."));
      const last = Math.max(0, Math.ceil(view.shown.length / PAGE_SIZE) - 1);
      const from = view.shown.length ? start + 1 : 0;
      const to = Math.min(start + PAGE_SIZE, view.shown.length);
      replace(pager,
        h("button", { type: "button", disabled: view.page === 0,
          onclick: () => { view.page -= 1; showPage(); } }, "Previous page"),
        h("span", { className: "count", "aria-live": "polite" },
          `Facts ${from}–${to} of ${view.shown.length}`),
        h("button", { type: "button", disabled: view.page >= last,
          onclick: () => { view.page += 1; showPage(); } }, "Next page"));
    }

    function applyFilter() {
      view.shown = view.all.filter((f) => matchesArgument(f, argumentInput.value.trim()));
      view.page = 0;
      showPage();
    }

    async function reload() {
      const chosen = predicateSelect.value;
      const loaded = await attempt(filterStatus, () => loadFacts(chosen));
      if (!loaded) return;
      replace(predicateSelect, h("option", { value: "" }, "every predicate"),
        [...new Set(loaded.predicates.filter((p) => p.factCount > 0).map((p) => p.predicate))]
          .map((name) => h("option", { value: name, selected: name === chosen }, name)));
      view.all = loaded.facts;
      applyFilter();
    }

    filters.addEventListener("submit", (event) => {
      event.preventDefault();
      reload();
    });

    // -- tell -----------------------------------------------------------------------
    const tellStatus = statusRegion();
    const tell = {
      predicate: h("input", { name: "predicate", required: true, spellcheck: false }),
      args: h("input", { name: "args", required: true, spellcheck: false }),
      scope: h("input", { name: "scope", value: t.scope || "main", spellcheck: false }),
      negated: h("input", { name: "negated", type: "checkbox", id: "tell-negated" }),
      confidence: h("input", { name: "confidence", type: "number", min: 0, max: 1,
        step: "any" }),
      strategy: h("select", { name: "conflictStrategy" },
        STRATEGIES.map((s) => h("option", { value: s }, s || "database default"))),
    };
    const tellForm = h("form", { className: "card", "aria-labelledby": "tell-title" },
      h("h3", { id: "tell-title" }, "Tell a fact"),
      h("div", { className: "grid" },
        field("Predicate", tell.predicate),
        field("Arguments", tell.args, 'Comma-separated; "quote" text that looks like a number'),
        field("Scope", tell.scope),
        field("Confidence (0–1, optional)", tell.confidence),
        field("On contradiction", tell.strategy),
        h("div", { className: "field check" }, tell.negated,
          h("label", { htmlFor: "tell-negated" },
            "Negated (NOT …)"))),
      h("button", { type: "submit" }, "Tell"), tellStatus);
    tellForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const told = await attempt(tellStatus, () => {
        const body = {
          predicate: tell.predicate.value.trim(),
          args: parseArgs(tell.args.value),
          negated: tell.negated.checked,
          scope: tell.scope.value.trim() || "main",
        };
        if (tell.confidence.value !== "") body.confidence = Number(tell.confidence.value);
        if (tell.strategy.value) body.conflictStrategy = tell.strategy.value;
        return call("POST", "/tell", { tenant: true, body });
      }, (answer) => answer.message);
      if (told) reload();
    });

    // -- forget ---------------------------------------------------------------------
    const forgetStatus = statusRegion();
    const forget = {
      predicate: h("input", { name: "predicate", required: true, spellcheck: false }),
      args: h("input", { name: "args", required: true, spellcheck: false }),
      scope: h("input", { name: "scope", value: t.scope || "main", spellcheck: false }),
      negated: h("input", { name: "negated", type: "checkbox", id: "forget-negated" }),
    };
    const forgetForm = h("form", { className: "card", "aria-labelledby": "forget-title" },
      h("h3", { id: "forget-title" }, "Forget a fact"),
      h("div", { className: "grid" },
        field("Predicate", forget.predicate),
        field("Arguments", forget.args),
        field("Scope", forget.scope),
        h("div", { className: "field check" }, forget.negated,
          h("label", { htmlFor: "forget-negated" }, "Negated"))),
      h("button", { type: "submit", className: "danger" }, "Forget"), forgetStatus);

    async function forgetFact(fact) {
      const ok = await confirmAction({
        title: "Forget this fact?",
        text: `${atomText(fact)} in scope ${fact.scope} of tenant ${t.tenant} will be retracted.`,
        action: "Forget",
      });
      if (!ok) return;
      const done = await attempt(filterStatus, () => call("POST", "/forget", {
        tenant: true,
        body: { predicate: fact.predicate, args: fact.args, negated: fact.negated,
          scope: fact.scope },
      }), (answer) => answer.message);
      if (done) reload();
    }

    forgetForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      let args;
      try {
        args = parseArgs(forget.args.value);
      } catch (error) {
        replace(forgetStatus, message("error", error.message));
        return;
      }
      const fact = { predicate: forget.predicate.value.trim(), args,
        negated: forget.negated.checked, scope: forget.scope.value.trim() || "main" };
      const ok = await confirmAction({
        title: "Forget this fact?",
        text: `${atomText(fact)} in scope ${fact.scope} will be retracted.`,
        action: "Forget",
      });
      if (!ok) return;
      const done = await attempt(forgetStatus,
        () => call("POST", "/forget", { tenant: true, body: fact }),
        (answer) => `${answer.message} (${answer.retracted} retracted)`);
      if (done) reload();
    });

    root.append(filters, filterStatus, results, pager,
      h("div", { className: "forms" }, tellForm, forgetForm));
    reload();
    return undefined;
  },
};
