// Building the page without ever parsing data as HTML.
//
// Everything the console shows comes from the API, and any of it (a fact's argument, a
// rule's text, an audit entry) may be written by someone else: it is only ever put into
// the page as text nodes or attribute values, never through innerHTML. The server's
// Content-Security-Policy forbids inline scripts as a second line of defence.

const SVG_NS = "http://www.w3.org/2000/svg";
// Read-only or form-owner properties: always set as attributes.
const ATTRIBUTE_ONLY = new Set(["list", "form", "role"]);

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name in node && typeof node[name] !== "function" && !name.includes("-")
               && !ATTRIBUTE_ONLY.has(name)) {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

/** An element with attributes (properties where the element has them) and children. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element; attributes are always set as attributes. */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

/** Replace every child of ``node``. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

let uniqueCounter = 0;

/** A fresh element id (labels need one per input). */
export function uid(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/** A labelled form field: ``{label, input}`` where input is already built. */
export function field(labelText, input, hint) {
  if (!input.id) input.id = uid("f");
  const parts = [h("label", { htmlFor: input.id }, labelText), input];
  if (hint) {
    const hintId = uid("hint");
    input.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, className: "hint" }, hint));
  }
  return h("div", { className: "field" }, parts);
}

/** A table with a caption, header row and body rows (each row an array of cells). */
export function table(caption, headers, rows, rowAttrs) {
  const head = h("tr", null, headers.map((text) => h("th", { scope: "col" }, text)));
  // Each cell names its column, so a phone can show a row as a labelled card.
  const body = rows.map((cells, i) =>
    h("tr", rowAttrs ? rowAttrs(i) : null,
      cells.map((cell, c) => h("td", { dataset: { label: headers[c] || "" } }, cell))));
  return h("div", { className: "table-wrap", tabIndex: 0, role: "region",
                     "aria-label": caption },
    h("table", null, h("caption", null, caption), h("thead", null, head),
      h("tbody", null, body)));
}

/** A message region: errors are announced at once, notes politely. */
export function message(kind, text) {
  return h("div", { className: kind, role: kind === "error" ? "alert" : "status" }, text);
}

/** An epoch-milliseconds time as local date and time, or a dash. */
export function when(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toLocaleString();
}
