// Touchstone charts, drawn with the vendored Chart.js (vendor/chartjs-4.6.1, see vendor/VENDORED.md).
//   <div data-curves="URL of curves.json">   cumulative return and ROC of each side
//   <canvas data-chart="ID">                 a chart whose spec is <script type="application/json" id="ID">
// A canvas that got a chart carries data-drawn="N points", which the browser tests read.
"use strict";
(() => {
  const COLORS = { model: "#1f6feb", baseline: "#bf8700", passive: "#8b949e", long: "#1a7f37", short: "#cf222e" };
  const color = (name, i) => COLORS[name] || ["#1f6feb", "#bf8700", "#8250df", "#1a7f37", "#cf222e"][i % 5];

  const make = (canvas, config) => {
    if (!window.Chart) return;
    const old = window.Chart.getChart(canvas);
    if (old) old.destroy();
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
    new window.Chart(canvas, config);
    const points = config.data.datasets.reduce((n, d) => n + d.data.length, 0);
    canvas.dataset.drawn = String(points);
  };

  const figure = (parent, title) => {
    const fig = document.createElement("figure");
    fig.className = "chart";
    const cap = document.createElement("figcaption");
    cap.textContent = title;
    const box = document.createElement("div");
    box.className = "chart-box";
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", title);
    box.appendChild(canvas);
    fig.append(cap, box);
    parent.appendChild(fig);
    return canvas;
  };

  const lines = (series, percent) => Object.entries(series).map(([name, ys], i) => ({
    label: name, data: ys.map((y) => (percent ? y * 100 : y)),
    borderColor: color(name, i), backgroundColor: color(name, i), pointRadius: 0, borderWidth: name === "model" ? 2 : 1.5,
  }));

  const drawCurves = async (holder) => {
    if (holder.dataset.loaded) return;
    holder.dataset.loaded = "1";
    let curves;
    try {
      const r = await fetch(holder.dataset.curves, { credentials: "same-origin" });
      if (!r.ok) { holder.textContent = "No curves for this task."; return; }
      curves = await r.json();
    } catch (e) { holder.textContent = "Curves could not be read."; return; }
    for (const side of ["long", "short"]) {
      const c = curves[side];
      if (!c) continue;
      const eq = c.cumulative_return || {};
      const { t, ...series } = eq;
      if (t && t.length) {
        make(figure(holder, `${side}: out-of-sample cumulative return (%)`), {
          type: "line", data: { labels: t.map((s) => s.slice(0, 10)), datasets: lines(series, true) },
          options: { scales: { x: { ticks: { maxTicksLimit: 6 } }, y: { title: { display: true, text: "%" } } } },
        });
      }
      const roc = c.roc || {};
      const sets = Object.entries(roc).map(([name, pts], i) => ({
        label: name, data: pts.fpr.map((x, j) => ({ x, y: pts.tpr[j] })), showLine: true,
        borderColor: color(name, i), backgroundColor: color(name, i), pointRadius: 0, borderWidth: 2,
      }));
      if (sets.length) {
        sets.push({ label: "chance", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], showLine: true, borderDash: [4, 4],
          borderColor: COLORS.passive, pointRadius: 0, borderWidth: 1 });
        make(figure(holder, `${side}: ROC (test rows)`), {
          type: "scatter", data: { datasets: sets },
          options: { scales: { x: { min: 0, max: 1, title: { display: true, text: "false positive rate" } },
            y: { min: 0, max: 1, title: { display: true, text: "true positive rate" } } } },
        });
      }
    }
  };

  const drawSpecs = (root) => {
    for (const canvas of root.querySelectorAll("canvas[data-chart]")) {
      const spec = document.getElementById(canvas.dataset.chart);
      if (spec) make(canvas, JSON.parse(spec.textContent));
    }
  };

  const draw = (root) => {
    drawSpecs(root);
    for (const holder of root.querySelectorAll("[data-curves]")) drawCurves(holder);
  };
  window.touchstoneCharts = { draw };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => draw(document));
  else draw(document);
})();
