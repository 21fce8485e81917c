// Rules the tenant's questions use (the database's and its own), and teaching new ones.

import { parseArgs } from "./atoms.js";
import { call } from "./api.js";
import { field, h, message, replace, table, uid, when } from "./dom.js";
import { attempt, confirmAction, heading, statusRegion, target } from "./ui.js";

const KINDS = [
  ["positive", "holds"],
  ["negated", "NOT … is stored"],
  ["naf", "cannot be proved (not …)"],
];

function literalRow(onRemove) {
  const kind = h("select", { name: "kind" }, KINDS.map(([v, t]) => h("option", { value: v }, t)));
  const predicate = h("input", { name: "predicate", required: true, spellcheck: false });
  const args = h("input", { name: "args", required: true, spellcheck: false });
  const row = h("fieldset", { className: "literal" },
    h("legend", null, "Body literal"),
    field("Predicate (or lt gt le ge eq neq)", predicate),
    field("Arguments", args, "Variables start with ?"),
    field("Kind", kind),
    h("button", { type: "button", className: "quiet small", onclick: () => onRemove(row) },
      "Remove literal"));
  row.read = () => ({
    predicate: predicate.value.trim(),
    args: parseArgs(args.value),
    negated: kind.value === "negated",
    naf: kind.value === "naf",
  });
  return row;
}

export default {
  id: "rules",
  title: "Rules",
  render(root) {
    const t = target();
    root.append(...heading("Rules",
      "The database's rules apply to every tenant; a tenant's own rules only to it."));
    if (!t.tenant) {
      root.append(message("note", "Pick a tenant in the bar above to see its rules."));
      return undefined;
    }
    const listStatus = statusRegion();
    const list = h("div", { className: "results" });

    async function reload() {
      const answer = await attempt(listStatus, () => call("GET", "/rules", { tenant: true }));
      if (!answer) return;
      const rows = answer.rules.map((rule) => [
        h("code", { className: "rule" }, rule.text),
        rule.level,
        rule.scope || "every scope",
        rule.confidence === null ? "—" : String(rule.confidence),
        when(rule.createdAt),
        rule.level === "tenant"
          ? h("button", { type: "button", className: "quiet small",
            "aria-label": `Remove rule ${rule.text}`, onclick: () => remove(rule) }, "Remove")
          : "",
      ]);
      replace(list, rows.length
        ? table(`Rules of ${t.tenant}`, ["rule", "level", "scope", "confidence", "taught", ""],
          rows)
        : message("note", "No rules yet."));
    }

    async function remove(rule) {
      const ok = await confirmAction({
        title: "Remove this rule?",
        text: `${rule.text} will no longer apply to tenant ${t.tenant}.`,
        action: "Remove",
      });
      if (!ok) return;
      const done = await attempt(listStatus,
        () => call("DELETE", `/rules/${encodeURIComponent(rule.id)}`, { tenant: true }),
        `Removed ${rule.id}`);
      if (done) reload();
    }

    // -- teach ----------------------------------------------------------------------
    const headPredicate = h("input", { name: "head-predicate", required: true,
      spellcheck: false });
    const headArgs = h("input", { name: "head-args", required: true, spellcheck: false });
    const scope = h("input", { name: "scope", value: t.scope, spellcheck: false });
    const confidence = h("input", { name: "confidence", type: "number", min: 0, max: 1,
      step: "any" });
    const literals = h("div", { className: "literals" });
    const teachStatus = statusRegion();
    function removeLiteral(row) {
      if (literals.children.length > 1) row.remove();
    }
    function addLiteral() {
      const row = literalRow(removeLiteral);
      literals.append(row);
      return row;
    }
    addLiteral();
    const formId = uid("teach");
    const form = h("form", { className: "card", "aria-labelledby": formId },
      h("h3", { id: formId }, "Teach a rule"),
      h("fieldset", { className: "literal" }, h("legend", null, "Head"),
        field("Predicate", headPredicate), field("Arguments", headArgs, "e.g. ?x, ?z")),
      literals,
      h("button", { type: "button", className: "quiet",
        onclick: () => addLiteral().querySelector("input").focus() }, "Add body literal"),
      h("div", { className: "grid" },
        field("Scope (blank: every scope)", scope),
        field("Confidence (optional)", confidence)),
      h("button", { type: "submit" }, "Teach"), teachStatus);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const taught = await attempt(teachStatus, () => {
        const body = {
          head: { predicate: headPredicate.value.trim(), args: parseArgs(headArgs.value) },
          body: [...literals.children].map((row) => row.read()),
        };
        if (scope.value.trim()) body.scope = scope.value.trim();
        if (confidence.value !== "") body.confidence = Number(confidence.value);
        return call("POST", "/teach", { tenant: true, body });
      }, (answer) => answer.message);
      if (taught) reload();
    });

    root.append(listStatus, list, form);
    reload();
    return undefined;
  },
};
