// The wall's rewind (CONTRACT §11, docs/ARCHITECTURE.md "Rewind"): a time slider over the rewind
// retention that shows every zone as it was at a past moment of stream time (GET /zones?at=), the
// page clearly marked as the past (a banner, another background) until "back to live", one click.
// Opening the wall as /?at=TS (epoch ms or RFC 3339) starts there. Apart from wall.js, which gives
// it one hook (window.__zw.show); every value goes into the page as text (textContent), and its look
// is wall.css's (the page's Content-Security-Policy allows no inline style).
(function () {
  "use strict";
  const zw = window.__zw;
  const STEP_MS = 60000;
  let retentionMs = 7 * 24 * 3600 * 1000, tz = "Asia/Shanghai", pastAt = null, loading = 0;

  function el(tag, props, text) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    if (text != null) e.textContent = String(text);
    return e;
  }

  function liveClock() {
    let c = 0;
    for (const d of zw.docs.values()) c = Math.max(c, Number(d.clock) || 0);
    return c;
  }

  function fmt(ms) {
    try {
      return new Intl.DateTimeFormat("zh-CN", {timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false}).format(new Date(ms));
    } catch (e) { return new Date(ms).toISOString(); }
  }

  // ---- the controls: a button in the header opens the slider row
  const box = el("div", {id: "rewind", className: "stat"});
  const toggle = el("button", {type: "button", id: "rewind-open", className: "layerbtn",
    title: "回放：墙在过去某一时刻的样子 · rewind: the wall as it was at a past moment"}, "◀◀ 回放 Rewind");
  const row = el("div", {id: "rewind-row", hidden: true});
  const back1 = el("button", {type: "button", id: "rewind-back", className: "layerbtn"}, "◀ 1 min");
  const slider = el("input", {type: "range", id: "rewind-slider", step: "1000"});
  slider.setAttribute("aria-label", "回放时刻 rewind moment");
  const fwd1 = el("button", {type: "button", id: "rewind-fwd", className: "layerbtn"}, "1 min ▶");
  const label = el("span", {id: "rewind-label"});
  const msg = el("span", {id: "rewind-msg", className: "en"});
  row.append(back1, slider, fwd1, label, msg);
  box.append(toggle);

  // ---- the banner: shown only in the past
  const banner = el("div", {id: "rewind-banner", hidden: true});
  banner.setAttribute("role", "status");
  const bannerText = el("span", {id: "rewind-when"});
  const live = el("button", {type: "button", id: "rewind-live"}, "▶ 回到实时 Back to live");
  banner.append(bannerText, live);

  const header = document.querySelector("header");
  header.append(box, banner, row);

  function setRange() {
    const now = liveClock() || Date.now();
    slider.min = String(Math.ceil((now - retentionMs) / 1000) * 1000);   // whole seconds: the step is one
    slider.max = String(now);
    if (pastAt == null) slider.value = String(now);
    label.textContent = fmt(Number(slider.value)) + ` (${tz})`;
  }

  function openRow(open) {
    row.hidden = !open;
    toggle.setAttribute("aria-pressed", open ? "true" : "false");
    if (open) setRange();
  }

  // the past's colours and the live-only layers hidden: wall.css, by data-rewind on <html>
  function markPast(on) {
    document.documentElement.dataset.rewind = document.body.dataset.rewind = on ? "past" : "live";
    banner.hidden = !on;
  }

  function setUrl(at) {
    const q = new URLSearchParams(location.search);
    if (at == null) q.delete("at"); else q.set("at", String(at));
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  }

  async function showAt(at) {
    const mine = ++loading;
    msg.textContent = "读取中 loading…";
    let r;
    try {
      r = await fetch("/zones?at=" + encodeURIComponent(at), {cache: "no-store",
        headers: {Authorization: "Bearer " + (sessionStorage.getItem("zw-token") || "")}});
    } catch (e) {
      if (mine === loading) msg.textContent = "无法连接 cannot reach the gateway";
      return;
    }
    if (mine !== loading) return;          // a later choice is on its way
    if (!r.ok) {
      let why = "HTTP " + r.status;
      try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
      msg.textContent = (r.status === 404 ? "该时刻无记录 no record of that moment: " : "") + why;
      return;
    }
    const arr = await r.json();
    if (mine !== loading) return;
    const when = Number(r.headers.get("X-Rewind-At")) || Number(at);
    const missing = Number(r.headers.get("X-Rewind-Missing") || 0);
    const past = new Map();
    for (const d of arr) past.set(d.zone_id, d);
    pastAt = when;
    zw.show(past);
    markPast(true);
    bannerText.textContent = `◀◀ 历史回放 PAST MOMENT · ${fmt(when)} (${tz}) · 非实时 not live` +
      (missing ? ` · ${missing} 个区域无记录 zones without a record` : "") + " · 事件与警力仅实时显示 incidents and units: live only";
    banner.dataset.at = String(when);
    slider.value = String(when);
    label.textContent = fmt(when) + ` (${tz})`;
    msg.textContent = "";
    setUrl(when);
  }

  function goLive() {
    loading++;                                 // an answer still on its way is dropped
    pastAt = null;
    zw.show(null);
    markPast(false);
    setUrl(null);
    msg.textContent = "";
    openRow(false);
  }

  toggle.addEventListener("click", () => openRow(row.hidden));
  slider.addEventListener("input", () => { label.textContent = fmt(Number(slider.value)) + ` (${tz})`; });
  slider.addEventListener("change", () => showAt(slider.value));
  back1.addEventListener("click", () => showAt(Math.max(Number(slider.min), Number(slider.value) - STEP_MS)));
  fwd1.addEventListener("click", () => showAt(Math.min(Number(slider.max), Number(slider.value) + STEP_MS)));
  live.addEventListener("click", goLive);
  markPast(false);

  async function start() {
    try {
      const r = await fetch("/stats", {cache: "no-store",
        headers: {Authorization: "Bearer " + (sessionStorage.getItem("zw-token") || "")}});
      if (r.ok) {
        const s = await r.json();
        tz = s.tz || tz;
        if (Number(s.rewind_retention_ms) > 0) retentionMs = Number(s.rewind_retention_ms);
      }
    } catch (e) { /* the defaults */ }
    const at = new URLSearchParams(location.search).get("at");
    if (at) {
      // the map must be drawn (index.html's main) before a past moment is shown on it
      while (!zw.project) await new Promise((res) => setTimeout(res, 100));
      openRow(true);
      await showAt(at);
    }
  }
  start();
})();
