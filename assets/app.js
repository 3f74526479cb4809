// Vitals front end: draws charts from data-chart attributes with uPlot, after every htmx swap
// too. Pages work without this file; it only adds charts and live refresh.
(function () {
  "use strict";
  var palette = ["#2463eb", "#e0661b", "#13804b", "#9b3bd1", "#c4321f", "#0f8a9d", "#8a6d1f", "#5a6b85"];

  function formatValue(unit, v) {
    if (v == null) return "–";
    var abs = Math.abs(v);
    var s = abs >= 1e6 ? (v / 1e6).toFixed(1) + "M" : abs >= 1e3 ? (v / 1e3).toFixed(1) + "k" : (Math.round(v * 100) / 100).toString();
    return unit === "percent" ? s + "%" : s;
  }

  function draw(el) {
    if (el._plot || typeof uPlot === "undefined") return;
    var data;
    try { data = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
    if (!data || !data.x || data.x.length === 0) return;
    var spark = !!data.spark;
    var width = el.clientWidth || 240;
    var height = spark ? 48 : 300;
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (s, i) {
      var opts = {
        label: s.label,
        stroke: s.band ? "rgba(101,112,132,0.55)" : palette[i % palette.length],
        width: spark ? 1.5 : s.band ? 1 : 2,
        fill: spark ? "rgba(36,99,235,0.08)" : undefined,
        spanGaps: !s.points,
        dash: s.dash ? [6, 4] : undefined,
        value: function (u, v) { return formatValue(data.unit, v); }
      };
      if (s.points) {
        // Anomalies: marks only, no line.
        opts.stroke = "#c4321f";
        opts.paths = function () { return null; };
        opts.points = { show: true, size: 9, fill: "#c4321f" };
      }
      series.push(opts);
      columns.push(s.values);
    });
    var opts = {
      width: width, height: height, series: series,
      legend: { show: !spark },
      cursor: { show: !spark },
      axes: spark ? [{ show: false }, { show: false }] : [{}, { values: function (u, vals) { return vals.map(function (v) { return formatValue(data.unit, v); }); }, size: 60 }],
      scales: { x: { time: true } }
    };
    el._plot = new uPlot(opts, columns, el);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(draw);
    if (root && root.matches && root.matches("[data-chart]")) draw(root);
  }

  function resizeAll() {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el._plot) { el._plot.setSize({ width: el.clientWidth, height: el._plot.height }); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    if (window.htmx) {
      htmx.onLoad(function (el) {
        drawAll(el);
        if (el.classList && el.classList.contains("card")) {
          el.classList.add("flash");
          setTimeout(function () { el.classList.remove("flash"); }, 800);
        }
      });
      document.body.addEventListener("htmx:sseOpen", function () {
        var live = document.getElementById("live");
        if (live) live.classList.add("on");
      });
      document.body.addEventListener("htmx:sseError", function () {
        var live = document.getElementById("live");
        if (live) live.classList.remove("on");
      });
    }
    var t;
    window.addEventListener("resize", function () { clearTimeout(t); t = setTimeout(resizeAll, 150); });
  });
})();
