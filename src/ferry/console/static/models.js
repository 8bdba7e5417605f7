/* Models page: every model and version from GET /console/api/models. */
"use strict";
(function () {
  const { call, say, el, errorText } = window.ferry;
  const root = document.getElementById("models");

  function fmt(n) { return Number(n).toLocaleString("en"); }

  function parity(p) {
    if (!p) return el("span", { class: "muted", text: "not checked (no conversion)" });
    const diffs = Object.entries(p.max_abs_diff || {}).map(function ([name, d]) {
      return name + ": " + Number(d).toExponential(2);
    }).join(", ");
    const mism = Object.values(p.mismatches || {}).reduce(function (a, b) { return a + b; }, 0);
    return el("div", { class: "parity" }, [
      el("span", { class: "badge " + (p.passed ? "pass" : "fail"),
                   text: p.passed ? "passed" : "failed" }), " ",
      el("span", { text: "max |Δ| " + diffs + " · tolerance " + p.tolerance +
                          (p.rtol ? " + " + p.rtol + "·|x|" : "") + " · " + p.samples +
                          " samples (" + p.inputs + ") · " + mism + " mismatches" }),
      el("div", { class: "muted", text: p.method }),
    ]);
  }

  function lineage(l) {
    if (!l) return el("span", { class: "muted", text: "imported" });
    const parts = [];
    if (l.parent !== null && l.parent !== undefined) parts.push("from version " + l.parent);
    (l.steps || []).forEach(function (s) { parts.push(s.name + (s.summary ? " (" + s.summary + ")" : "")); });
    if (l.forced) parts.push("published with --force");
    return el("span", { text: parts.join(" → ") });
  }

  function source(s) {
    return el("div", {}, [
      el("div", { text: s.filename + " (" + s.format + (s.framework ? ", " + s.framework : "") + ")" }),
      el("div", { class: "hash", title: "sha256 " + s.sha256, text: "sha256 " + s.sha256.slice(0, 16) + "…" }),
    ]);
  }

  function versionRow(name, v) {
    const tr = el("tr", { "data-version": v.version });
    const cells = [
      el("th", { scope: "row", text: v.version }),
      el("td", {}, [el("span", { class: "badge " + v.status, "data-status": v.status, text: v.status })]),
      el("td", {}, [v.format + " → " + v.runtime, el("div", { class: "muted", text: v.platform })]),
      el("td", {}, [v.source ? source(v.source) : v.problem]),
      el("td", { text: v.converter || "–" }),
      el("td", { class: "parity-cell" }, [parity(v.parity)]),
      el("td", { text: v.labels ? v.labels.join(", ") : "–" }),
      el("td", {}, [lineage(v.lineage)]),
      el("td", { class: "num", text: v.instances === null ? "–" : fmt(v.instances) }),
      el("td", { class: "num requests", text: fmt(v.requests || 0) }),
      el("td", { class: "num", text: fmt(v.errors || 0) + (v.refused ? " (+" + fmt(v.refused) + " 429)" : "") }),
    ];
    cells.forEach(function (c) { tr.append(c); });
    return tr;
  }

  function modelSection(m) {
    const head = el("tr", {}, ["Version", "Status", "Format → runtime", "Source", "Converter",
      "Parity", "Labels", "Lineage", "Instances", "Requests", "Errors"].map(function (h, i) {
      return el("th", { scope: "col", class: i >= 8 ? "num" : null, text: h });
    }));
    const body = el("tbody", {}, m.versions.map(function (v) { return versionRow(m.name, v); }));
    const id = "model-" + m.name.replace(/[^A-Za-z0-9_-]/g, "_");
    return el("section", { class: "model", id: id, "data-model": m.name, "aria-labelledby": id + "-h" }, [
      el("h2", { id: id + "-h" }, [m.name + " ", el("span", { class: "badge " + m.state.toLowerCase(),
        text: m.state.toLowerCase() }), m.default ? el("span", { class: "muted", text: " default model" }) : null]),
      m.reason ? el("p", { class: "muted", text: m.reason }) : null,
      el("p", {}, [el("a", { href: "/console/try?model=" + encodeURIComponent(m.name), text: "Try " + m.name })]),
      el("div", { class: "scroll" }, [el("table", { "aria-label": "Versions of " + m.name }, [
        el("thead", {}, [head]), body])]),
    ]);
  }

  async function load() {
    const answer = await call("/console/api/models");
    root.setAttribute("aria-busy", "false");
    if (!answer.ok) { say(errorText(answer), true); root.textContent = ""; return; }
    root.replaceChildren.apply(root, answer.body.models.length
      ? answer.body.models.map(modelSection)
      : [el("p", { text: "The repository holds no model yet." })]);
    say(answer.body.models.length + " model(s).");
  }
  load();
})();
