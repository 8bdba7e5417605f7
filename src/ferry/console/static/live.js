/* Live: polls GET /console/api/live once a second (only while the page is visible). */
"use strict";
(function () {
  const { call, say, el, errorText } = window.ferry;
  const POINTS = 120;
  const t = [], rps = [], refused = [], errors = [], p50 = [], p99 = [];
  const pauseBtn = document.getElementById("live-pause");
  const age = document.getElementById("live-age");
  let paused = false, timer = null, readings = 0;

  function text(id, v) { document.getElementById(id).textContent = v; }
  function ms(v) { return v === null || v === undefined ? "–" : (v < 1 ? v.toFixed(3) : v.toFixed(2)) + " ms"; }
  function num(v) { return Number(v).toLocaleString("en", { maximumFractionDigits: 1 }); }

  function makeChart(id, series, yLabel) {
    const node = document.getElementById(id);
    const opts = {
      width: Math.max(280, node.clientWidth), height: 220,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      axes: [{}, { label: yLabel, size: 60 }],
      series: [{}].concat(series),
      legend: { live: false },
    };
    const data = [t].concat(series.map(function () { return []; }));
    const chart = new uPlot(opts, data, node);
    new ResizeObserver(function () { chart.setSize({ width: Math.max(280, node.clientWidth), height: 220 }); }).observe(node);
    return chart;
  }

  const rpsChart = makeChart("chart-rps", [
    { label: "requests/s", stroke: "#0b5cad", width: 2 },
    { label: "429/s", stroke: "#9a6700", width: 2 },
    { label: "errors/s", stroke: "#cf222e", width: 2 },
  ], "per second");
  const latChart = makeChart("chart-lat", [
    { label: "p50 ms", stroke: "#1a7f37", width: 2, spanGaps: false },
    { label: "p99 ms", stroke: "#8250df", width: 2, spanGaps: false },
  ], "ms");
  window.ferryLive = { rps: rpsChart, latency: latChart, readings: function () { return readings; } };

  function push(arr, v) { arr.push(v); if (arr.length > POINTS) arr.shift(); }

  function pair(s) { return s ? ms(s.p50_ms).replace(" ms", "") + " / " + ms(s.p99_ms).replace(" ms", "") : "–"; }

  function table(models) {
    const body = document.querySelector("#live-models tbody");
    body.replaceChildren.apply(body, Object.entries(models).map(function ([name, m]) {
      const st = m.stages || {};
      const batches = Object.entries(m.batch_sizes || {}).map(function ([k, v]) { return k + ": " + num(v); }).join(", ");
      return el("tr", { "data-model": name }, [
        el("th", { scope: "row", text: name }),
        el("td", { class: "num", text: num(m.rps) }),
        el("td", { class: "num", text: ms(m.p50_ms).replace(" ms", "") }),
        el("td", { class: "num", text: ms(m.p99_ms).replace(" ms", "") }),
        el("td", { class: "num", text: pair(st.decode) }),
        el("td", { class: "num", text: pair(st.queue) }),
        el("td", { class: "num", text: pair(st.compute) }),
        el("td", { class: "num", text: pair(st.encode) }),
        el("td", { class: "num", text: num(m.queue_depth) }),
        el("td", { text: batches || "–" }),
        el("td", { class: "num", text: num(m.refused_per_s) }),
        el("td", { class: "num", text: num(m.errors_per_s) }),
      ]);
    }));
  }

  async function poll() {
    timer = null;
    if (paused || document.hidden) return;
    const answer = await call("/console/api/live");
    if (!answer.ok) { say(errorText(answer), true); schedule(); return; }
    const f = answer.body, total = f.total;
    readings += 1;
    text("live-total", num(total.requests_total));
    text("live-rps", num(total.rps));
    text("live-p50", ms(total.p50_ms));
    text("live-p99", ms(total.p99_ms));
    text("live-refused", num(total.refused_per_s));
    text("live-errors", num(total.errors_per_s));
    text("live-queue", num(total.queue_depth));
    age.textContent = "updated " + new Date(f.time * 1000).toLocaleTimeString() +
      (f.interval_s ? " (over " + f.interval_s.toFixed(2) + " s)" : "");
    if (f.interval_s) {
      push(t, f.time);
      push(rps, total.rps); push(refused, total.refused_per_s); push(errors, total.errors_per_s);
      push(p50, total.p50_ms); push(p99, total.p99_ms);
      rpsChart.setData([t, rps, refused, errors]);
      latChart.setData([t, p50, p99]);
    }
    table(f.models);
    say("");
    schedule();
  }

  function schedule() { if (!timer && !paused) timer = setTimeout(poll, 1000); }

  pauseBtn.addEventListener("click", function () {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume updates" : "Pause updates";
    if (!paused) poll();
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(); });
  poll();
})();
