// A proof (``{goal, type, rule?, confidence, children}``, API.md §3) as a tree of
// native disclosure widgets: keyboard-operable (Tab to a step, Enter or Space to open
// it) and announced as expanded/collapsed by screen readers. Children are built only
// when their step is first opened, so a proof thousands of steps deep costs nothing
// until someone walks down it.

import { atomText } from "./atoms.js";
import { h } from "./dom.js";

const TYPE_LABELS = {
  fact: "stored fact",
  rule: "by rule",
  naf: "not provable",
  builtin: "comparison",
};
export const EXPAND_ALL_LIMIT = 500;

function label(node) {
  return [
    h("span", { className: `badge ${node.type}` }, TYPE_LABELS[node.type] || node.type),
    " ",
    h("code", { className: "atom" }, atomText(node.goal)),
    node.rule ? [" ", h("span", { className: "via" }, "via "),
      h("code", { className: "rule" }, node.rule)] : null,
    node.confidence !== null && node.confidence !== undefined
      ? h("span", { className: "confidence" }, ` confidence ${node.confidence}`) : null,
  ];
}

function step(node, depth) {
  if (!node.children || node.children.length === 0) {
    return h("li", { className: "leaf" }, label(node));
  }
  const details = h("details", { className: "step" }, h("summary", null, label(node)));
  details.fill = () => {
    if (details.filled) return;
    details.filled = true;
    details.append(h("ul", null, node.children.map((child) => step(child, depth + 1))));
  };
  details.addEventListener("toggle", () => {
    if (details.open) details.fill();
  });
  if (depth < 1) {
    details.fill();
    details.open = true;
  }
  return h("li", null, details);
}

/** The proof tree of one answer, its first level open. */
export function proofTree(proof, caption) {
  return h("ul", { className: "proof", "aria-label": caption }, step(proof, 0));
}

/** Open (or close) every step under ``root``, at most EXPAND_ALL_LIMIT of them. */
export function expandAll(root, open) {
  let budget = EXPAND_ALL_LIMIT;
  const pending = [...root.querySelectorAll("details.step")];
  while (pending.length && budget > 0) {
    const details = pending.shift();
    if (open) {
      details.fill();
      details.open = true;
      budget -= 1;
      pending.push(...details.querySelectorAll(":scope > ul > li > details.step"));
    } else {
      details.open = false;
    }
  }
}
