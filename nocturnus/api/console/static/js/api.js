// Every call the console makes goes through here: the public HTTP API, the key of this
// browser tab, and the database/tenant the user picked. Nothing else talks to the server.

const KEY_STORAGE = "nocturnus.console.key";
const TARGET_STORAGE = "nocturnus.console.target";

/** An answer in the API's error envelope (or a failure to reach the server). */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** What the user reads: the envelope's code and message, never a stack. */
  describe() {
    return this.code ? `${this.code}: ${this.message}` : this.message;
  }
}

export const session = {
  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  },
  get target() {
    try {
      return JSON.parse(sessionStorage.getItem(TARGET_STORAGE)) || {};
    } catch {
      return {};
    }
  },
  set target(value) {
    sessionStorage.setItem(TARGET_STORAGE, JSON.stringify(value));
  },
};

/**
 * Call ``method path`` and return the parsed JSON (or text, for ``/metrics``).
 *
 * ``tenant: true`` sends the current ``X-Database`` and ``X-Tenant-ID``. Throws :class:`ApiError` for any non-2xx answer
 * except the statuses in ``accept`` (``/health`` answers 503 with its report),
 * carrying the envelope's code and message.
 */
export async function call(method, path,
  { body, query, tenant = false, text = false, accept = [] } = {}) {
  const headers = { Accept: text ? "text/plain" : "application/json" };
  const key = session.key;
  if (key) headers.Authorization = `Bearer ${key}`;
  if (tenant) {
    const target = session.target;
    headers["X-Database"] = target.database || "default";
    headers["X-Tenant-ID"] = target.tenant || "";
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== "") params.set(name, value);
    }
    const encoded = params.toString();
    if (encoded) url += `?${encoded}`;
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "NETWORK", "Cannot reach the server");
  }
  const raw = await response.text();
  if (!response.ok && !accept.includes(response.status)) {
    let envelope = null;
    try {
      envelope = JSON.parse(raw);
    } catch {
      envelope = null;
    }
    if (envelope && typeof envelope.message === "string") {
      throw new ApiError(response.status, envelope.code, envelope.message, envelope.details);
    }
    throw new ApiError(response.status, `HTTP_${response.status}`,
      `Unexpected answer from the server (HTTP ${response.status})`);
  }
  if (text) return raw;
  try {
    return raw ? JSON.parse(raw) : null;
  } catch {
    throw new ApiError(response.status, "BAD_RESPONSE", "The server's answer is not JSON");
  }
}

/** The answer of ``GET /scopes`` as ``[{name, facts, rules}]``, whichever shape it has. */
export function scopeDetails(answer) {
  if (Array.isArray(answer.details)) return answer.details;
  return (answer.scopes || []).map((s) => (typeof s === "string" ? { name: s } : s));
}

/** Facts of a recall answer: a bare array (upstream shape) or ``{results}``. */
export function resultsOf(answer) {
  return Array.isArray(answer) ? answer : answer.results || [];
}

let openapi = null;

/** The server's OpenAPI document (public), fetched once: what routes it offers. */
export async function capabilities() {
  if (openapi === null) openapi = await call("GET", "/openapi.json");
  return openapi;
}

/** Whether the server offers ``method path`` (``/execute`` arrives with the DSL). */
export async function offers(method, path) {
  const doc = await capabilities();
  return Boolean(doc.paths && doc.paths[path] && doc.paths[path][method.toLowerCase()]);
}
