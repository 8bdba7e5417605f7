/* ferry console: what every page shares — calls with the key, the status line. */
"use strict";
(function () {
  const KEY = "ferry.console.key";
  const statusEl = document.getElementById("status");
  const authForm = document.getElementById("auth");
  const waiting = [];

  function say(text, bad) {
    statusEl.textContent = text || "";
    statusEl.classList.toggle("bad", !!bad);
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const key = sessionStorage.getItem(KEY);
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  /* fetch(path) with the key; JSON answers parsed. A 401 asks for a key (once) and
     calls again once one is given. Resolves {ok, status, body}. */
  async function call(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    const response = await fetch(path, opts);
    let body = null;
    const type = response.headers.get("content-type") || "";
    body = type.includes("json") ? await response.json() : await response.text();
    if (response.status === 401) {
      authForm.hidden = false;
      say("This server needs an API key or token: enter one above.", true);
      document.getElementById("auth-key").focus();
      await new Promise(function (resolve) { waiting.push(resolve); });
      return call(path, options);
    }
    return { ok: response.ok, status: response.status, body: body };
  }

  authForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const input = document.getElementById("auth-key");
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = "";
    authForm.hidden = true;
    say("");
    waiting.splice(0).forEach(function (resolve) { resolve(); });
  });
  document.getElementById("auth-forget").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    say("Key forgotten.");
  });
  if (sessionStorage.getItem(KEY)) authForm.hidden = true;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) {
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    });
    return node;
  }

  function errorText(answer) {
    if (answer.body && answer.body.error) return answer.status + ": " + answer.body.error;
    return "HTTP " + answer.status;
  }

  window.ferry = { call: call, say: say, el: el, errorText: errorText };
})();
