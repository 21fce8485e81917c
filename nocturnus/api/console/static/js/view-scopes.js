// Scopes of a tenant: fork, compare side by side (conflicts highlighted), merge, delete.

import { atomText } from "./atoms.js";
import { call, scopeDetails } from "./api.js";
import { field, h, message, replace, table } from "./dom.js";
import { attempt, confirmAction, heading, statusRegion, target } from "./ui.js";

const STRATEGIES = ["SOURCE_WINS", "TARGET_WINS", "KEEP_BOTH", "REJECT"];

function scopeInput(name, value) {
  return h("input", { name, value, required: true, spellcheck: false,
    pattern: "[A-Za-z0-9_.:\\-]{1,128}", list: "scope-names" });
}

/** The diff as one table: a row per differing fact, source left and target right. */
function diffTable(source, targetScope, diff) {
  const rows = [];
  const kinds = [];
  for (const c of diff.conflicts) {
    rows.push([h("code", { className: "atom" }, atomText(c.source)),
      h("code", { className: "atom" }, atomText(c.target)), h("strong", null, "conflict")]);
    kinds.push("conflict");
  }
  for (const fact of diff.onlyInSource) {
    rows.push([h("code", { className: "atom" }, atomText(fact)), "—", `only in ${source}`]);
    kinds.push("only-source");
  }
  for (const fact of diff.onlyInTarget) {
    rows.push(["—", h("code", { className: "atom" }, atomText(fact)), `only in ${targetScope}`]);
    kinds.push("only-target");
  }
  const conflicts = diff.conflicts.length;
  const summary = h("p", { className: "count", role: "status" },
    `${conflicts} conflict${conflicts === 1 ? "" : "s"}, ${diff.onlyInSource.length} only in `
    + `${source}, ${diff.onlyInTarget.length} only in ${targetScope}, ${diff.same} the same`);
  if (!rows.length) return [summary];
  return [summary, table(`Diff of ${source} against ${targetScope}`,
    [`${source} (source)`, `${targetScope} (target)`, "difference"], rows,
    (i) => ({ className: `diff ${kinds[i]}` }))];
}

export default {
  id: "scopes",
  title: "Scopes",
  render(root) {
    const t = target();
    root.append(...heading("Scopes",
      "Scopes are branches of one tenant's facts: fork one, change it, compare, merge."));
    if (!t.tenant) {
      root.append(message("note", "Pick a tenant in the bar above to see its scopes."));
      return undefined;
    }
    const listStatus = statusRegion();
    const list = h("div", { className: "results" });

    async function reload() {
      const answer = await attempt(listStatus, () => call("GET", "/scopes", { tenant: true }));
      if (!answer) return;
      const rows = scopeDetails(answer).map((s) => [
        h("code", null, s.name), String(s.facts ?? "—"), String(s.rules ?? "—"),
        h("button", { type: "button", className: "quiet small",
          "aria-label": `Delete scope ${s.name}`, onclick: () => remove(s.name) }, "Delete"),
      ]);
      replace(list, rows.length
        ? table(`Scopes of ${t.tenant}`, ["scope", "facts", "rules", ""], rows)
        : message("note", "This tenant holds no facts yet."));
    }

    async function remove(name) {
      const ok = await confirmAction({
        title: `Delete scope ${name}?`,
        text: `Every fact of scope ${name} and the rules scoped to it are removed.`,
        typed: name,
      });
      if (!ok) return;
      const done = await attempt(listStatus,
        () => call("DELETE", `/scope/${encodeURIComponent(name)}`, { tenant: true }),
        (a) => `Deleted ${a.deleted} facts of ${name}`);
      if (done) reload();
    }

    // -- fork -------------------------------------------------------------------------
    const forkSource = scopeInput("source", t.scope || "main");
    const forkTarget = scopeInput("target", "");
    const forkStatus = statusRegion();
    const fork = h("form", { className: "card", "aria-labelledby": "fork-title" },
      h("h3", { id: "fork-title" }, "Fork"),
      h("div", { className: "grid" }, field("From scope", forkSource),
        field("New scope", forkTarget)),
      h("button", { type: "submit" }, "Fork"), forkStatus);
    fork.addEventListener("submit", async (event) => {
      event.preventDefault();
      const done = await attempt(forkStatus, () => call("POST", "/scope/fork", {
        tenant: true, body: { source: forkSource.value.trim(), target: forkTarget.value.trim() },
      }), (a) => `Forked ${a.source} into ${a.target}: ${a.copied} facts copied`);
      if (done) reload();
    });

    // -- diff -------------------------------------------------------------------------
    const diffSource = scopeInput("source", "");
    const diffTarget = scopeInput("target", "main");
    const diffStatus = statusRegion();
    const diffResult = h("div", { className: "results diff-result" });
    const diffForm = h("form", { className: "card", "aria-labelledby": "diff-title" },
      h("h3", { id: "diff-title" }, "Compare"),
      h("div", { className: "grid" }, field("Source scope", diffSource),
        field("Target scope", diffTarget)),
      h("button", { type: "submit" }, "Compare"), diffStatus);
    diffForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const source = diffSource.value.trim();
      const against = diffTarget.value.trim();
      const diff = await attempt(diffStatus, () => call("POST", "/scope/diff", {
        tenant: true, body: { source, target: against },
      }));
      if (!diff) return;
      replace(diffResult, diffTable(source, against, diff));
      diffResult.scrollIntoView({ block: "start" });
    });

    // -- merge ------------------------------------------------------------------------
    const mergeSource = scopeInput("source", "");
    const mergeTarget = scopeInput("target", "main");
    const strategy = h("select", { name: "strategy" },
      STRATEGIES.map((s) => h("option", { value: s }, s)));
    const mergeStatus = statusRegion();
    const merge = h("form", { className: "card", "aria-labelledby": "merge-title" },
      h("h3", { id: "merge-title" }, "Merge"),
      h("div", { className: "grid" }, field("Source scope", mergeSource),
        field("Into scope", mergeTarget), field("On conflict", strategy)),
      h("button", { type: "submit" }, "Merge"), mergeStatus);
    merge.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { source: mergeSource.value.trim(), target: mergeTarget.value.trim(),
        strategy: strategy.value };
      const ok = await confirmAction({
        title: `Merge ${body.source} into ${body.target}?`,
        text: `Facts only ${body.source} holds are added to ${body.target}; conflicts are `
          + `settled by ${body.strategy}.`,
        action: "Merge",
      });
      if (!ok) return;
      const done = await attempt(mergeStatus,
        () => call("POST", "/scope/merge", { tenant: true, body }),
        (a) => `Merged ${a.merged} facts (${a.conflicts} conflicts, ${a.strategy})`);
      if (done) reload();
    });

    root.append(listStatus, list, h("div", { className: "forms" }, fork, diffForm, merge),
      diffResult);
    reload();
    return undefined;
  },
};
