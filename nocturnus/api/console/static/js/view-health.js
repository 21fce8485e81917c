// Health checks and a few live figures from /metrics, polled while the view is open.

import { call } from "./api.js";
import { lineChart } from "./chart.js";
import { h, message, replace, table } from "./dom.js";
import { between, snapshot } from "./metrics.js";
import { attempt, heading, statusRegion } from "./ui.js";

export const POLL_MS = 3000;
const KEEP = 40;

export default {
  id: "health",
  title: "Health",
  render(root) {
    root.append(...heading("Health and metrics",
      `Checks from /health; rates and latency from /metrics every ${POLL_MS / 1000} s `
      + "(the console's own scrapes left out)."));
    const healthStatus = statusRegion();
    const checks = h("div", { className: "results" });
    const metricsStatus = statusRegion();
    const charts = h("div", { className: "charts" });
    const series = [];
    let previous = null;

    async function loadHealth() {
      const answer = await attempt(healthStatus,
        () => call("GET", "/health", { accept: [503] }));
      if (!answer) return;
      replace(checks,
        h("p", { className: `health ${answer.status}`, role: "status" },
          `Status: ${answer.status} · version ${answer.version}`),
        table("Health checks", ["check", "status", "detail"],
          Object.entries(answer.checks).map(([name, c]) => [name,
            h("span", { className: `badge ${c.status}` }, c.status), c.message])));
    }

    async function scrape() {
      const text = await attempt(metricsStatus,
        () => call("GET", "/metrics", { text: true }));
      if (text === undefined) return;
      const now = snapshot(text, Date.now());
      if (previous) {
        const point = between(previous, now);
        if (point) series.push(point);
        if (series.length > KEEP) series.shift();
      }
      previous = now;
      const pick = (name) => series.map((p) => p[name]);
      replace(charts,
        lineChart("Events appended", "/s", pick("eventsPerSecond")),
        lineChart("Requests", "/s", pick("requestsPerSecond")),
        lineChart("Mean latency", "ms", pick("meanLatencyMs")),
        lineChart("p95 latency (bucket bound)", "ms", pick("p95LatencyMs")),
        lineChart("Facts in memory", "", series.length ? pick("facts") : [now.facts]));
    }

    root.append(healthStatus, checks, h("h3", null, "Live figures"), metricsStatus, charts);
    loadHealth();
    scrape();
    const timer = setInterval(() => {
      scrape();
      loadHealth();
    }, POLL_MS);
    return () => clearInterval(timer);
  },
};
