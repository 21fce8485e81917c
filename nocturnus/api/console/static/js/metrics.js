// Reading /metrics (the Prometheus text exposition format) into the few figures the
// health view charts.

const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/;
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample of a text exposition: ``[{name, labels, value}]``. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const found = SAMPLE.exec(line.trim());
    if (!found) continue;
    const labels = {};
    for (const [, name, value] of (found[3] || "").matchAll(LABEL)) {
      labels[name] = value.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const raw = found[4];
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
    samples.push({ name: found[1], labels, value });
  }
  return samples;
}

function total(samples, name, keep = () => true) {
  return samples.filter((s) => s.name === name && keep(s.labels))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Cumulative bucket counts by upper bound, summed over every label set. */
function buckets(samples, name) {
  const byBound = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const bound = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    byBound.set(bound, (byBound.get(bound) || 0) + s.value);
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0]);
}

const LATENCY = "nocturnus_http_request_duration_seconds";
// The console's own polling of /metrics would otherwise dominate an idle server's figures.
const notMetrics = (labels) => labels.route !== "/metrics";

/** The counters the health view follows, read from one scrape. */
export function snapshot(text, at) {
  const samples = parseMetrics(text);
  return {
    at,
    events: total(samples, "nocturnus_events_appended_total"),
    requests: total(samples, "nocturnus_http_requests_total", notMetrics),
    latencySum: total(samples, `${LATENCY}_sum`, notMetrics),
    latencyCount: total(samples, `${LATENCY}_count`, notMetrics),
    latencyBuckets: buckets(samples.filter((s) => notMetrics(s.labels)), LATENCY),
    facts: total(samples, "nocturnus_facts"),
  };
}

/** The quantile ``q`` of the requests between two scrapes, from bucket deltas (seconds). */
function quantile(before, after, q) {
  const previous = new Map(before.latencyBuckets);
  const deltas = after.latencyBuckets.map(([bound, count]) =>
    [bound, count - (previous.get(bound) || 0)]);
  const count = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (count <= 0) return null;
  const rank = q * count;
  for (const [bound, cumulative] of deltas) {
    if (cumulative >= rank) return Number.isFinite(bound) ? bound : null;
  }
  return null;
}

/** Rates and latencies between two consecutive scrapes. */
export function between(before, after) {
  const seconds = (after.at - before.at) / 1000;
  if (seconds <= 0) return null;
  const requests = after.latencyCount - before.latencyCount;
  return {
    at: after.at,
    eventsPerSecond: Math.max(0, after.events - before.events) / seconds,
    requestsPerSecond: Math.max(0, after.requests - before.requests) / seconds,
    meanLatencyMs: requests > 0 ? ((after.latencySum - before.latencySum) / requests) * 1000
      : null,
    p95LatencyMs: (() => {
      const bound = quantile(before, after, 0.95);
      return bound === null ? null : bound * 1000;
    })(),
    facts: after.facts,
  };
}
