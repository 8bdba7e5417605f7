/* Admin: load (hot swap to the newest version) and unload, each after a confirmation. */
"use strict";
(function () {
  const { call, say, el, errorText } = window.ferry;
  const root = document.getElementById("admin");
  const dialog = document.getElementById("confirm");

  function confirmAction(text) {
    document.getElementById("confirm-text").textContent = text;
    dialog.returnValue = "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () { resolve(dialog.returnValue === "ok"); }, { once: true });
      dialog.showModal();
      document.getElementById("confirm-cancel").focus();
    });
  }

  async function act(name, action, button) {
    const what = action === "load"
      ? "Load " + name + ": serve its newest version (a hot swap; requests keep being answered)?"
      : "Unload " + name + ": stop serving it (requests for it will get 404)?";
    if (!(await confirmAction(what))) { say("Nothing changed."); button.focus(); return; }
    button.disabled = true;
    say((action === "load" ? "Loading " : "Unloading ") + name + "…");
    const answer = await call("/v2/repository/models/" + encodeURIComponent(name) + "/" + action,
      { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    await load();  // the table first, then the status line: it says what the table shows
    if (!answer.ok) say(errorText(answer), true);
    else say(name + (action === "load" ? " loaded." : " unloaded."));
    const again = document.querySelector('[data-model="' + CSS.escape(name) + '"] button[data-action="' + action + '"]');
    if (again) again.focus();
  }

  function row(m) {
    const served = m.versions.filter(function (v) { return v.status === "ready"; }).map(function (v) { return v.version; });
    const stored = m.versions.map(function (v) { return v.version; });
    const load = el("button", { type: "button", "data-action": "load", text: "Load newest" });
    const unload = el("button", { type: "button", class: "danger", "data-action": "unload", text: "Unload", disabled: !served.length });
    load.setAttribute("aria-label", "Load the newest version of " + m.name);
    unload.setAttribute("aria-label", "Unload " + m.name);
    load.addEventListener("click", function () { act(m.name, "load", load); });
    unload.addEventListener("click", function () { act(m.name, "unload", unload); });
    return el("tr", { "data-model": m.name }, [
      el("th", { scope: "row", text: m.name }),
      el("td", {}, [el("span", { class: "badge " + m.state.toLowerCase(), "data-state": m.state, text: m.state.toLowerCase() })]),
      el("td", { text: served.length ? served.join(", ") : "none" }),
      el("td", { text: stored.join(", ") || "none" }),
      el("td", { class: "muted", text: m.reason || "" }),
      el("td", {}, [el("div", { class: "row" }, [load, unload])]),
    ]);
  }

  async function load() {
    const answer = await call("/console/api/models");
    root.setAttribute("aria-busy", "false");
    if (!answer.ok) { say(errorText(answer), true); return; }
    const head = el("tr", {}, ["Model", "State", "Served", "Stored versions", "Reason", "Actions"].map(function (h) {
      return el("th", { scope: "col", text: h });
    }));
    root.replaceChildren(el("div", { class: "scroll" }, [el("table", { "aria-label": "Models" }, [
      el("thead", {}, [head]), el("tbody", {}, answer.body.models.map(row))])]));
  }
  load();
})();
