// A small line chart in SVG: the last values of one series, its latest value in words.

import { h, svg } from "./dom.js";

const WIDTH = 240;
const HEIGHT = 64;
const PAD = 4;

function format(value, unit) {
  if (value === null || value === undefined) return "—";
  if (!unit) return Math.round(value).toLocaleString();
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${unit}`;
}

/**
 * A figure charting ``points`` (numbers or null gaps), captioned with ``title`` and the
 * latest value; the SVG is labelled for screen readers with the same words.
 */
export function lineChart(title, unit, points) {
  const values = points.filter((v) => v !== null && v !== undefined);
  const latest = values.length ? values[values.length - 1] : null;
  const peak = Math.max(1e-9, ...values);
  const stepX = points.length > 1 ? (WIDTH - 2 * PAD) / (points.length - 1) : 0;
  const coordinates = [];
  points.forEach((v, i) => {
    if (v === null || v === undefined) return;
    const x = PAD + i * stepX;
    const y = HEIGHT - PAD - (v / peak) * (HEIGHT - 2 * PAD);
    coordinates.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  const words = `${title}: latest ${format(latest, unit)}, peak ${format(values.length ? peak
    : null, unit)} over the last ${points.length} samples`;
  const picture = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
    "aria-label": words, class: "chart", preserveAspectRatio: "none" },
  svg("line", { x1: PAD, y1: HEIGHT - PAD, x2: WIDTH - PAD, y2: HEIGHT - PAD,
    class: "axis" }),
  coordinates.length > 1 ? svg("polyline", { points: coordinates.join(" "), class: "line" })
    : null,
  coordinates.length === 1 ? svg("circle", { cx: coordinates[0].split(",")[0],
    cy: coordinates[0].split(",")[1], r: 2, class: "dot" }) : null);
  return h("figure", { className: "chart-card" },
    h("figcaption", null, h("span", null, title),
      h("strong", { className: "latest" }, format(latest, unit))),
    picture);
}
