// Ask a question: the answers, their bindings and each answer's proof as a tree.

import { atomText, parseArgs } from "./atoms.js";
import { call, offers } from "./api.js";
import { field, h, message, replace } from "./dom.js";
import { expandAll, proofTree } from "./proof.js";
import { attempt, heading, statusRegion, target } from "./ui.js";

function answerItem(result, binding, index) {
  const parts = [
    h("p", { className: "answer-head" },
      h("strong", null, `Answer ${index + 1}: `),
      h("code", { className: "atom" }, atomText(result)),
      ` in scope ${result.scope}`,
      result.confidence !== null && result.confidence !== undefined
        ? `, confidence ${result.confidence}` : ""),
  ];
  const names = Object.entries(binding || {});
  if (names.length) {
    parts.push(h("dl", { className: "bindings" },
      names.map(([name, value]) => [h("dt", null, `?${name}`),
        h("dd", null, h("code", null, typeof value === "string" ? value : String(value)))])));
  }
  if (result.proof) {
    const tree = proofTree(result.proof, `Proof of answer ${index + 1}`);
    parts.push(h("div", { className: "proof-tools" },
      h("button", { type: "button", className: "quiet small",
        onclick: () => expandAll(tree, true) }, "Expand all"),
      h("button", { type: "button", className: "quiet small",
        onclick: () => expandAll(tree, false) }, "Collapse all")), tree);
  }
  return h("li", { className: "answer card" }, parts);
}

/**
 * The text syntax box, for servers that offer ``POST /execute``: the script's statements
 * run in order, and each question's answers are shown with their proofs as trees.
 */
function scriptForm() {
  const command = h("textarea", { name: "command", rows: 3, spellcheck: false,
    required: true, className: "code" });
  const status = statusRegion();
  const output = h("div", { className: "results" });
  const form = h("form", { className: "card", "aria-label": "Run text statements" },
    h("h3", null, "Text statements"),
    field("Statements", command,
      "e.g. parent(alice, bob).  ?- grandparent(?who, charlie).  EXPLAIN grandparent(alice, "
      + "charlie);"),
    h("button", { type: "submit" }, "Run"), status, output);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await attempt(status, () => call("POST", "/execute",
      { tenant: true, body: { command: command.value } }));
    if (!answer) return;
    let index = 0;
    replace(output, h("ol", { className: "statements" }, answer.statements.map((entry) => {
      const answers = (entry.results || []).map((r, i) => {
        index += 1;
        return answerItem(r, entry.bindings[i], index - 1);
      });
      return h("li", null,
        h("pre", { className: "text" }, `line ${entry.line}: ${entry.message}`),
        answers.length ? h("ol", { className: "answers" }, answers) : null);
    })));
  });
  return form;
}

export default {
  id: "ask",
  title: "Ask",
  render(root) {
    const t = target();
    root.append(...heading("Ask",
      "Answers are derived by inference from the tenant's facts and rules; open a proof "
      + "step to see what it rests on."));
    if (!t.tenant) {
      root.append(message("note", "Pick a tenant in the bar above to ask questions."));
      return undefined;
    }
    const predicate = h("input", { name: "predicate", required: true, spellcheck: false });
    const args = h("input", { name: "args", required: true, spellcheck: false });
    const scope = h("input", { name: "scope", value: t.scope, spellcheck: false });
    const withProof = h("input", { type: "checkbox", name: "withProof", checked: true,
      id: "ask-proof" });
    const limit = h("input", { type: "number", name: "limit", min: 1, step: 1 });
    const status = statusRegion();
    const answers = h("div", { className: "results" });
    const form = h("form", { className: "card", "aria-label": "Ask a question" },
      h("div", { className: "grid" },
        field("Predicate", predicate),
        field("Arguments", args, "Variables start with ?, e.g. ?who, charlie"),
        field("Scope (blank: every scope)", scope),
        field("At most (answers)", limit),
        h("div", { className: "field check" }, withProof,
          h("label", { htmlFor: "ask-proof" }, "With proofs"))),
      h("button", { type: "submit" }, "Ask"), status);
    // With "At most", the server pages the answers: "More answers" follows its cursor.
    const shown = { body: null, count: 0 };
    const list = h("ol", { className: "answers" });
    const more = h("button", { type: "button", className: "quiet", hidden: true,
      onclick: () => fetchAnswers(true) }, "More answers");

    async function fetchAnswers(next) {
      const answer = await attempt(status, () => {
        if (!next) {
          const body = {
            predicate: predicate.value.trim(),
            args: parseArgs(args.value),
            withProof: withProof.checked,
          };
          if (scope.value.trim()) body.scope = scope.value.trim();
          if (limit.value) body.limit = Number(limit.value);
          shown.body = body;
        }
        return call("POST", "/ask", { tenant: true, body: shown.body });
      });
      if (!answer) return;
      if (!next) {
        shown.count = 0;
        replace(list);
      }
      answer.results.forEach((r, i) =>
        list.append(answerItem(r, answer.bindings[i], shown.count + i)));
      shown.count += answer.results.length;
      shown.body = { ...shown.body, cursor: answer.nextCursor };
      more.hidden = !answer.nextCursor;
      replace(answers,
        h("p", { className: "count", role: "status" },
          `${shown.count} answer${shown.count === 1 ? "" : "s"}`
          + (answer.nextCursor ? " so far" : "")),
        shown.count ? list : null, more);
      if (!next) answers.scrollIntoView({ block: "start" });
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      fetchAnswers(false);
    });
    root.append(form, answers);
    offers("POST", "/execute").then((offered) => {
      if (offered) form.before(scriptForm());
    }, () => undefined);
    return undefined;
  },
};
