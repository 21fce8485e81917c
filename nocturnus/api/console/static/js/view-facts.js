// Facts of a tenant (one scope or every scope): filter, page, tell, forget.

import { anyArgs, atomText, parseArgs } from "./atoms.js";
import { call } from "./api.js";
import { field, h, message, replace, table, when } from "./dom.js";
import { attempt, confirmAction, heading, scopeOrNull, statusRegion, target } from "./ui.js";

export const PAGE_SIZE = 50;
const STRATEGIES = ["", "REJECT", "NEWEST_WINS", "CONFIDENCE", "KEEP_BOTH"];

/**
 * The queries that together list the stored facts asked for: one per predicate, arity
 * and polarity that holds any (each counted with ``shape: "count"``), so that pages walk
 * through them with the server's cursors and never load a whole tenant at once.
 */
async function factStreams(predicate, pattern) {
  const scope = scopeOrNull();
  const stats = await call("GET", "/predicates", { tenant: true, query: { scope } });
  const chosen = stats.predicates.filter((p) => p.factCount > 0
    && (!predicate || p.predicate === predicate)
    && (!pattern.length || p.arity === pattern.length));
  const candidates = chosen.flatMap((p) => [false, true].map((negated) => ({
    predicate: p.predicate,
    args: pattern.length ? pattern : anyArgs(p.arity),
    negated,
    scope,
  })));
  const counts = await Promise.all(candidates.map((q) =>
    call("POST", "/query", { tenant: true, body: { ...q, shape: "count" } })));
  return {
    streams: candidates.filter((_, i) => counts[i].count > 0),
    total: counts.reduce((sum, c) => sum + c.count, 0),
    predicates: stats.predicates,
  };
}

/** One page of facts from ``start`` ({index, cursor}), and where the next one starts. */
async function factPage(streams, start) {
  const facts = [];
  let at = start;
  while (facts.length < PAGE_SIZE && at.index < streams.length) {
    const body = { ...streams[at.index], limit: PAGE_SIZE - facts.length };
    if (at.cursor) body.cursor = at.cursor;
    const answer = await call("POST", "/query", { tenant: true, body });
    facts.push(...answer.results);
    at = answer.nextCursor ? { index: at.index, cursor: answer.nextCursor }
      : { index: at.index + 1, cursor: null };
  }
  return { facts, next: at };
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
    // starts[i]: where page i begins among the streams (pages follow the cursors)
    const view = { streams: [], total: 0, starts: [], page: 0 };

    // -- filters ------------------------------------------------------------------
    const predicateSelect = h("select", { name: "predicate" },
      h("option", { value: "" }, "every predicate"));
    const patternInput = h("input", { name: "pattern", spellcheck: false });
    const filterStatus = statusRegion();
    const filters = h("form", { className: "inline", "aria-label": "Filter facts" },
      field("Predicate", predicateSelect),
      field("Argument pattern", patternInput, "e.g. ?_, charlie (?_ matches anything)"),
      h("button", { type: "submit" }, "Filter"));
    const results = h("div", { className: "results" });
    const pager = h("div", { className: "pager" });

    function showPage(facts, first) {
      const rows = facts.map((fact) => [
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
      replace(results, facts.length
        ? table(`Facts of ${t.tenant}`, ["fact", "scope", "confidence", "told", ""], rows)
        : message("note", "No stored facts match."));
      const from = facts.length ? first + 1 : 0;
      const hasNext = view.starts[view.page + 1].index < view.streams.length;
      replace(pager,
        h("button", { type: "button", disabled: view.page === 0,
          onclick: () => turn(view.page - 1) }, "Previous page"),
        h("span", { className: "count", "aria-live": "polite" },
          `Facts ${from}–${first + facts.length} of ${view.total}`),
        h("button", { type: "button", disabled: !hasNext,
          onclick: () => turn(view.page + 1) }, "Next page"));
    }

    async function turn(page) {
      const loaded = await attempt(filterStatus,
        () => factPage(view.streams, view.starts[page]));
      if (!loaded) return;
      view.page = page;
      view.starts[page + 1] = loaded.next;
      showPage(loaded.facts, page * PAGE_SIZE);
    }

    async function reload() {
      const chosen = predicateSelect.value;
      const found = await attempt(filterStatus, () => factStreams(chosen,
        patternInput.value.trim() ? parseArgs(patternInput.value) : []));
      if (!found) return;
      replace(predicateSelect, h("option", { value: "" }, "every predicate"),
        [...new Set(found.predicates.filter((p) => p.factCount > 0).map((p) => p.predicate))]
          .map((name) => h("option", { value: name, selected: name === chosen }, name)));
      view.streams = found.streams;
      view.total = found.total;
      view.starts = [{ index: 0, cursor: null }];
      await turn(0);
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
