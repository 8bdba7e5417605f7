/* Try it: a real V2 request built from the signature, the answer with labels and bars. */
"use strict";
(function () {
  const { call, say, el, errorText } = window.ferry;
  const modelSel = document.getElementById("try-model");
  const versionSel = document.getElementById("try-version");
  const input = document.getElementById("try-input");
  const fileInput = document.getElementById("try-file");
  const result = document.getElementById("try-result");
  const raw = document.getElementById("try-raw");
  const padSection = document.getElementById("pad-section");
  const pad = document.getElementById("pad");
  let models = [];

  function current() {
    const m = models.find(function (x) { return x.name === modelSel.value; });
    if (!m) return null;
    const ready = m.versions.filter(function (v) { return v.status === "ready"; });
    const v = ready.find(function (x) { return x.version === versionSel.value; }) || ready[0];
    return v ? { model: m, version: v } : null;
  }

  function count(shape) { return shape.reduce(function (a, b) { return a * b; }, 1); }

  function example(spec) {
    const shape = spec.shape.map(function (d) { return d < 0 ? 1 : d; });
    const n = count(shape);
    const value = spec.datatype === "BYTES" ? "" : spec.datatype === "BOOL" ? false : 0;
    return { name: spec.name, shape: shape, datatype: spec.datatype, data: new Array(n).fill(value) };
  }

  function showRequest(inputs) {
    input.value = '{"inputs": [\n' + inputs.map(function (i) { return "  " + JSON.stringify(i); }).join(",\n") + "\n]}";
  }

  function padFits(v) {
    if (!v || v.inputs.length !== 1) return false;
    const s = v.inputs[0];
    const dims = s.shape.filter(function (d, i) { return !(i === 0 && (d === -1 || d === 1) && s.shape.length === 2); });
    return /^FP/.test(s.datatype) && dims.length === 1 && dims[0] === 64;
  }

  function choose() {
    const c = current();
    if (!c) { say("No ready version of this model.", true); return; }
    showRequest(c.version.inputs.map(example));
    padSection.hidden = !padFits(c.version);
    if (!padSection.hidden) drawPad();
  }

  function fillVersions() {
    const m = models.find(function (x) { return x.name === modelSel.value; });
    versionSel.replaceChildren(el("option", { value: "", text: "latest" }));
    (m ? m.versions : []).filter(function (v) { return v.status === "ready"; }).forEach(function (v) {
      versionSel.append(el("option", { value: v.version, text: v.version }));
    });
  }

  /* ---------------------------------------------------------------- the answer */

  function softmax(xs) {
    const max = Math.max.apply(null, xs);
    const exps = xs.map(function (x) { return Math.exp(x - max); });
    const sum = exps.reduce(function (a, b) { return a + b; }, 0);
    return exps.map(function (e) { return e / sum; });
  }

  function bars(values, labels) {
    const sum = values.reduce(function (a, b) { return a + b; }, 0);
    const probabilities = values.every(function (x) { return x >= 0 && x <= 1; }) && Math.abs(sum - 1) < 1e-3;
    const p = probabilities ? values : softmax(values);
    let best = 0;
    p.forEach(function (x, i) { if (x > p[best]) best = i; });
    const order = p.map(function (x, i) { return i; });
    const list = el("ul", { class: "bars", "aria-label": probabilities ? "Probabilities" : "Softmax of the logits" },
      order.map(function (i) {
        const pct = (p[i] * 100);
        return el("li", { class: i === best ? "best" : null, "data-label": labels[i] }, [
          el("span", { class: "label", text: labels[i] }),
          el("span", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
                       "aria-valuenow": pct.toFixed(1), "aria-label": labels[i] },
             [el("span", { style: null })]),
          el("span", { class: "num", text: pct.toFixed(1) + " %" }),
        ]);
      }));
    list.querySelectorAll(".bar > span").forEach(function (span, i) { span.style.width = (p[i] * 100).toFixed(2) + "%"; });
    return { best: best, node: el("div", {}, [
      el("p", { class: "muted", text: probabilities ? "The model's probabilities:" :
        "Softmax of the logits (the model answers logits; shown as probabilities):" }), list]) };
  }

  function showAnswer(body, labels) {
    raw.textContent = JSON.stringify(body, null, 1);
    const parts = [el("p", { class: "muted", text: body.model_name + " version " + body.model_version + " answered." })];
    (body.outputs || []).forEach(function (out) {
      const shape = out.shape || [];
      const rowLen = shape.length ? shape[shape.length - 1] : 1;
      parts.push(el("h3", { text: out.name + " " + JSON.stringify(shape) + " " + out.datatype }));
      const numeric = out.datatype !== "BYTES" && out.datatype !== "BOOL";
      if (labels && numeric && rowLen === labels.length && out.data.length === rowLen) {
        const b = bars(out.data.map(Number), labels);
        parts.unshift(el("p", { class: "verdict", id: "try-verdict", "data-label": labels[b.best] },
          ["Answer: ", labels[b.best]]));
        parts.push(b.node);
      } else {
        parts.push(el("pre", { text: JSON.stringify(out.data.slice(0, 200)) + (out.data.length > 200 ? " …" : "") }));
      }
    });
    result.replaceChildren.apply(result, parts);
  }

  async function send(text) {
    const c = current();
    if (!c) return;
    let body;
    try { body = JSON.parse(text); } catch (e) {
      say("The request is not valid JSON: " + e.message, true); return;
    }
    const path = "/v2/models/" + encodeURIComponent(c.model.name) +
      (versionSel.value ? "/versions/" + encodeURIComponent(versionSel.value) : "") + "/infer";
    say("Sending…");
    result.replaceChildren(el("p", { text: "Waiting for the answer…" }));
    const answer = await call(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify(body) });
    if (!answer.ok) {
      say(errorText(answer), true);
      result.replaceChildren(el("p", { class: "verdict", text: errorText(answer) }));
      raw.textContent = JSON.stringify(answer.body, null, 1);
      return;
    }
    say("Answered.");
    showAnswer(answer.body, c.version.labels);
  }

  document.getElementById("try-form").addEventListener("submit", function (event) {
    event.preventDefault();
    send(input.value);
  });

  /* ---------------------------------------------------------------- files */

  function parseNpy(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes[0] !== 0x93 || String.fromCharCode.apply(null, bytes.slice(1, 6)) !== "NUMPY")
      throw new Error("not a .npy file");
    const major = bytes[6];
    const view = new DataView(buffer);
    const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
    const start = (major === 1 ? 10 : 12);
    const header = new TextDecoder().decode(bytes.slice(start, start + headerLen));
    const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
    if (/'fortran_order':\s*True/.test(header)) throw new Error("Fortran-order arrays are not read; save with np.save(..., np.ascontiguousarray(a))");
    const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").map(function (s) { return s.trim(); })
      .filter(Boolean).map(Number);
    const types = { "<f4": [Float32Array, "FP32"], "<f8": [Float64Array, "FP64"], "<i4": [Int32Array, "INT32"],
                    "<i8": [BigInt64Array, "INT64"], "|u1": [Uint8Array, "UINT8"], "|i1": [Int8Array, "INT8"] };
    const t = types[descr];
    if (!t) throw new Error("dtype " + descr + " is not read here (use float32, float64, int32, int64, uint8, int8)");
    const data = Array.from(new t[0](buffer.slice(start + headerLen)), Number);
    return { shape: shape, datatype: t[1], data: data };
  }

  function shapeOf(a) {
    const shape = [];
    for (let x = a; Array.isArray(x); x = x[0]) shape.push(x.length);
    return shape;
  }

  fileInput.addEventListener("change", async function () {
    const file = fileInput.files[0];
    const c = current();
    if (!file || !c) return;
    try {
      const spec = c.version.inputs[0];
      if (file.name.endsWith(".npy")) {
        const arr = parseNpy(await file.arrayBuffer());
        showRequest([{ name: spec.name, shape: arr.shape, datatype: spec.datatype, data: arr.data }]);
      } else {
        const doc = JSON.parse(await file.text());
        if (doc && doc.inputs) { input.value = JSON.stringify(doc, null, 1); }
        else { showRequest([{ name: spec.name, shape: shapeOf(doc), datatype: spec.datatype,
                              data: Array.isArray(doc) ? doc.flat(Infinity) : [doc] }]); }
      }
      say("Loaded " + file.name + ": press Send the request.");
    } catch (e) { say("Could not read " + file.name + ": " + e.message, true); }
  });

  /* ---------------------------------------------------------------- the 8x8 pad */

  const N = 8, CELL = 32;
  const ink = new Array(N * N).fill(0);
  let cursor = 0, stroke = null;
  const ctx = pad.getContext("2d");

  function drawPad() {
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height);
    for (let i = 0; i < N * N; i++) {
      const g = Math.round(255 * (1 - ink[i]));
      ctx.fillStyle = "rgb(" + g + "," + g + "," + g + ")";
      ctx.fillRect((i % N) * CELL, Math.floor(i / N) * CELL, CELL, CELL);
    }
    ctx.strokeStyle = "#d0d7de"; ctx.lineWidth = 1;
    for (let k = 1; k < N; k++) {
      ctx.beginPath(); ctx.moveTo(k * CELL + .5, 0); ctx.lineTo(k * CELL + .5, N * CELL); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(0, k * CELL + .5); ctx.lineTo(N * CELL, k * CELL + .5); ctx.stroke();
    }
    if (document.activeElement === pad) {
      ctx.strokeStyle = "#0b5cad"; ctx.lineWidth = 3;
      ctx.strokeRect((cursor % N) * CELL + 2, Math.floor(cursor / N) * CELL + 2, CELL - 4, CELL - 4);
    }
  }

  function padChanged() {
    drawPad();
    const c = current();
    if (!c) return;
    const spec = c.version.inputs[0];
    const shape = spec.shape.length === 2 ? [1, 64] : [64];
    showRequest([{ name: spec.name, shape: shape, datatype: spec.datatype, data: ink.slice() }]);
  }

  function darken(i) { ink[i] = Math.min(1, ink[i] + 0.25); }

  function cellAt(event) {
    const r = pad.getBoundingClientRect();
    const x = Math.floor((event.clientX - r.left) / r.width * N);
    const y = Math.floor((event.clientY - r.top) / r.height * N);
    return x >= 0 && x < N && y >= 0 && y < N ? y * N + x : -1;
  }

  pad.addEventListener("pointerdown", function (event) {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    stroke = new Set();
    const i = cellAt(event);
    if (i >= 0) { stroke.add(i); darken(i); padChanged(); }
  });
  pad.addEventListener("pointermove", function (event) {
    if (!stroke) return;
    const i = cellAt(event);
    if (i >= 0 && !stroke.has(i)) { stroke.add(i); darken(i); padChanged(); }
  });
  function endStroke() { stroke = null; }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("focus", drawPad);
  pad.addEventListener("blur", drawPad);
  pad.addEventListener("keydown", function (event) {
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -N, ArrowDown: N };
    if (event.key in moves) {
      const next = cursor + moves[event.key];
      const sameRow = Math.abs(moves[event.key]) !== 1 || Math.floor(next / N) === Math.floor(cursor / N);
      if (next >= 0 && next < N * N && sameRow) cursor = next;
      drawPad();
    } else if (event.key === " " || event.key === "Enter") {
      darken(cursor); padChanged();
    } else if (event.key === "Backspace" || event.key === "Delete") {
      ink[cursor] = 0; padChanged();
    } else { return; }
    event.preventDefault();
  });
  document.getElementById("pad-clear").addEventListener("click", function () {
    ink.fill(0); padChanged(); say("Pad cleared.");
  });
  document.getElementById("pad-send").addEventListener("click", function () { padChanged(); send(input.value); });

  /* ---------------------------------------------------------------- start */

  modelSel.addEventListener("change", function () { fillVersions(); choose(); });
  versionSel.addEventListener("change", choose);

  async function load() {
    const answer = await call("/console/api/models");
    if (!answer.ok) { say(errorText(answer), true); return; }
    models = answer.body.models.filter(function (m) {
      return m.versions.some(function (v) { return v.status === "ready"; });
    });
    models.forEach(function (m) { modelSel.append(el("option", { value: m.name, text: m.name })); });
    const wanted = new URLSearchParams(location.search).get("model");
    const preferred = models.find(function (m) { return m.name === wanted; }) ||
      models.find(function (m) { return m.default; }) || models[0];
    if (!preferred) { say("No model is served now.", true); return; }
    modelSel.value = preferred.name;
    fillVersions();
    choose();
  }
  load();
})();
