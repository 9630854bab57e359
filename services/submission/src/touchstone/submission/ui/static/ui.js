// Touchstone UI: small progressive enhancements over server-rendered pages (no build step).
"use strict";
(() => {
  const LIVE = new Set(["VALIDATING", "SCHEDULED", "RUNNING"]);
  const get = async (url) => {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (r.status === 303 || r.redirected && r.url.includes("/ui/sign-in")) { location.reload(); return null; }
    return r.ok ? r.text() : null;
  };

  // dialogs rendered open by the server become modal; Esc or Close goes back to the list
  for (const d of document.querySelectorAll("dialog[data-open]")) {
    if (d.showModal) { d.removeAttribute("open"); d.showModal(); } else { d.setAttribute("open", ""); }
    const close = d.querySelector("[data-close]");
    d.addEventListener("cancel", (e) => { e.preventDefault(); if (close) location.href = close.href; });
    const bad = d.querySelector("[aria-invalid=true] input, input[aria-invalid=true]");
    if (bad) bad.focus();
  }

  document.addEventListener("submit", (e) => {
    const msg = e.target.dataset && e.target.dataset.confirm;
    if (msg && !confirm(msg)) e.preventDefault();
  });

  // intervals list editor and the GPU field that only matters when RunPod may run the task
  document.addEventListener("click", (e) => {
    const t = e.target;
    if (t.matches("[data-add-interval]")) {
      const list = document.getElementById("interval-list");
      const li = list.querySelector("li").cloneNode(true);
      li.querySelector("input").value = "";
      list.appendChild(li);
      li.querySelector("input").focus();
    } else if (t.matches("[data-remove-interval]")) {
      const list = document.getElementById("interval-list");
      if (list.children.length > 1) t.closest("li").remove(); else list.querySelector("input").value = "";
    }
  });
  const platform = document.querySelector("[data-platform]");
  if (platform) {
    const gpu = document.querySelector("[data-gpu]");
    const sync = () => { gpu.hidden = platform.value === "onprem"; };
    platform.addEventListener("change", sync); sync();
  }

  // Results boxes load when opened, and reload when their submission changes
  const loadResults = async (details) => {
    const html = await get(details.dataset.results);
    if (html === null) return;
    const body = details.querySelector(".results-body");
    body.innerHTML = html;
    if (window.touchstoneCharts) window.touchstoneCharts.draw(body);
  };
  document.addEventListener("toggle", (e) => {
    if (e.target.matches && e.target.matches("details[data-results]") && e.target.open) loadResults(e.target);
  }, true);

  const refreshRow = async (id) => {
    const old = document.getElementById("s-" + id);
    if (!old) return;
    const html = await get(`/ui/submissions/${encodeURIComponent(id)}/row`);
    if (html === null) return;
    const wasOpen = old.querySelector("details[open]") !== null;
    const tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    const row = tpl.content.firstElementChild;
    if (wasOpen) row.querySelector("details").open = true;
    old.replaceWith(row);
    if (wasOpen) loadResults(row.querySelector("details"));
  };

  const liveDot = document.getElementById("live");
  const feed = (onChange, onOpen) => {
    const es = new EventSource("/ui/events");
    es.addEventListener("status", (e) => onChange(JSON.parse(e.data)));
    es.onopen = () => { if (liveDot) liveDot.classList.add("on"); if (onOpen) onOpen(); };
    es.onerror = () => { if (liveDot) liveDot.classList.remove("on"); };
    return es;
  };

  const subs = document.querySelector("form[data-live]");
  if (subs) {
    const pending = new Map();
    const soon = (id) => {
      clearTimeout(pending.get(id));
      pending.set(id, setTimeout(() => { pending.delete(id); refreshRow(id); }, 150));
    };
    const banner = document.getElementById("new-banner");
    feed((change) => {
      if (document.getElementById("s-" + change.submission_id)) soon(change.submission_id);
      else if (change.type === "SubmissionCreated" && banner) banner.hidden = false;
    }, () => {
      for (const tb of document.querySelectorAll("tbody.sub")) if (LIVE.has(tb.dataset.status)) soon(tb.dataset.id);
    });
  }

  const tasks = document.querySelector("table[data-refresh]");
  if (tasks) {
    let timer = null;
    const refresh = () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const html = await get(tasks.dataset.refresh);
        if (html === null) return;
        const tpl = document.createElement("template");
        tpl.innerHTML = html.trim();
        document.getElementById("task-rows").replaceWith(tpl.content.firstElementChild);
      }, 200);
    };
    feed((change) => { if (change.task_id) refresh(); }, refresh);
    setInterval(refresh, 10000);  // ages move on even when nothing happens
  }

  // a running task's State (progress, GPU use) refreshes while the page is open
  const state = document.querySelector("[data-state-refresh]");
  if (state) {
    setInterval(async () => {
      const html = await get(state.dataset.stateRefresh);
      if (html === null) return;
      const tpl = document.createElement("template");
      tpl.innerHTML = html.trim();
      document.getElementById("task-state").replaceWith(tpl.content.firstElementChild);
    }, 5000);
  }

  // live log follow
  const log = document.querySelector("pre[data-follow]");
  if (log) {
    const state = document.getElementById("follow-state");
    const es = new EventSource(log.dataset.follow);
    es.addEventListener("line", (e) => {
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.append(JSON.parse(e.data) + "\n");
      if (atEnd) log.scrollTop = log.scrollHeight;
    });
    es.addEventListener("end", (e) => {
      es.close();
      if (state) { state.textContent = "finished: " + JSON.parse(e.data); state.classList.remove("on"); }
      log.dataset.ended = "true";
    });
    es.onopen = () => { if (state) state.classList.add("on"); };
  }
})();
