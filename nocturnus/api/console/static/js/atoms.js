// Facts, goals and their arguments as people type and read them.

/**
 * Parse an argument list typed as ``alice, 42, "a, b", "7"``.
 *
 * Arguments are separated by commas outside double quotes. A double-quoted argument is
 * a JSON string (so ``"7"`` stays the string "7" and may hold commas); a bare number is a
 * number; anything else is the trimmed text as a string (``?x`` is a variable).
 * Throws an Error naming the problem on an unterminated quote or an empty argument.
 */
export function parseArgs(text) {
  const args = [];
  let i = 0;
  const source = text.trim();
  if (source === "") return args;
  while (i <= source.length) {
    while (source[i] === " " || source[i] === "\t") i += 1;
    let value;
    if (source[i] === '"') {
      let j = i + 1;
      while (j < source.length && source[j] !== '"') j += source[j] === "\\" ? 2 : 1;
      if (j >= source.length) throw new Error(`unterminated quote at character ${i + 1}`);
      value = JSON.parse(source.slice(i, j + 1));
      i = j + 1;
      while (source[i] === " " || source[i] === "\t") i += 1;
      if (i < source.length && source[i] !== ",") {
        throw new Error(`expected a comma after the quoted argument at character ${i + 1}`);
      }
    } else {
      let j = source.indexOf(",", i);
      if (j === -1) j = source.length;
      const raw = source.slice(i, j).trim();
      if (raw === "") throw new Error(`argument ${args.length + 1} is empty`);
      value = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(raw) ? Number(raw) : raw;
      i = j;
    }
    args.push(value);
    if (i >= source.length) break;
    i += 1; // the comma
    if (i >= source.length) throw new Error(`argument ${args.length + 1} is empty`);
  }
  return args;
}

/** One argument as typed back: strings that would read as numbers are quoted. */
export function formatArg(value) {
  if (typeof value === "number") return String(value);
  const text = String(value);
  if (/^-?\d/.test(text) || text.includes(",") || text.includes('"') || text !== text.trim()) {
    return JSON.stringify(text);
  }
  return text;
}

/** ``plan(enterprise)``, ``NOT approved(order7)``, ``not p(?x)`` for a NAF literal. */
export function atomText(atom) {
  const body = `${atom.predicate}(${(atom.args || []).map(formatArg).join(", ")})`;
  if (atom.naf) return `not ${body}`;
  return atom.negated ? `NOT ${body}` : body;
}

/** The text of a key in a stable order, to compare facts across two lists. */
export function atomKey(atom) {
  return JSON.stringify([atom.scope ?? null, atom.predicate, !!atom.negated, atom.args]);
}

/** A pattern with one anonymous variable per position. */
export function anyArgs(arity) {
  return Array.from({ length: arity }, () => "?_");
}

/**
 * Parse one goal typed as ``grandparent(?x, charlie)`` or ``NOT approved(order7)``.
 * Throws an Error saying what is wrong.
 */
export function parseGoal(text) {
  const found = /^\s*(NOT\s+)?([^\s(),]+)\s*\((.*)\)\s*$/s.exec(text);
  if (!found) throw new Error(`goal ${JSON.stringify(text.trim())}: expected predicate(args)`);
  return { predicate: found[2], args: parseArgs(found[3]), negated: Boolean(found[1]) };
}
