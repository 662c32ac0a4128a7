// The duty plan on the wall (CONTRACT §10, issue 26), apart from index.html: posts as marks (green
// manned, amber understaffed, red empty, grey off) with their counts, checkpoints (red when
// overdue), and a banner with the phase in force and who set it. It polls GET /posts,
// /checkpoints and /plan/phase every POLL_MS with the wall's token and draws into the wall's map
// through window.__zw.project; every text goes in through textContent (no markup from data, and
// none at all under the wall's Content-Security-Policy and Trusted Types); its look is in wall.css.
"use strict";
(() => {
  const POLL_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const COLOR = {manned: "#2fa864", understaffed: "#f2a516", empty: "#e5383b", off: "#6b7280"};
  const NAMES = {manned: "在岗 manned", understaffed: "缺员 understaffed", empty: "空岗 empty", off: "未启用 off"};
  const state = {posts: [], checkpoints: [], phase: null};
  window.__zwDuty = state;

  function token() { return sessionStorage.getItem("zw-token") || ""; }

  async function get(path) {
    const r = await fetch(path, {headers: {Authorization: "Bearer " + token()}, cache: "no-store"});
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(path + " " + r.status);
    return r.json();
  }

  function el(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text != null) e.textContent = String(text);
    return e;
  }

  function layer() {
    let g = document.getElementById("g-posts");
    const map = document.getElementById("map");
    if (!g && map) {
      g = el("g", {id: "g-posts"});
      map.appendChild(g);
    }
    return g;
  }

  function banner() {
    let b = document.getElementById("duty-phase");
    if (!b) {
      b = document.createElement("div");
      b.id = "duty-phase";
      b.setAttribute("role", "status");
      b.hidden = true;   // styled by wall.css (#duty-phase): no style from script under the wall's CSP
      document.body.appendChild(b);
    }
    return b;
  }

  function draw() {
    const px = window.__zw && window.__zw.project;
    const g = layer();
    if (!px || !g) return;
    const unit = Number(document.getElementById("map").dataset.unit || 1);
    const frag = document.createDocumentFragment();
    for (const c of state.checkpoints) {
      const [x, y] = px(c.lon, c.lat), r = 6 * unit;
      const m = el("rect", {x: (x - r).toFixed(1), y: (y - r).toFixed(1), width: (2 * r).toFixed(1),
        height: (2 * r).toFixed(1), transform: `rotate(45 ${x.toFixed(1)} ${y.toFixed(1)})`,
        fill: c.overdue ? COLOR.empty : "#9ca3af", stroke: "#111827", "stroke-width": unit,
        class: "duty-checkpoint" + (c.overdue ? " overdue" : "")});
      m.dataset.id = c.checkpoint_id;
      m.appendChild(el("title", {}, `${c.name} ${c.overdue ? "超时未巡 overdue" : "已巡 visited"}` +
        (c.last_unit ? ` (${c.last_unit})` : "")));
      frag.appendChild(m);
    }
    for (const p of state.posts) {
      const [x, y] = px(p.lon, p.lat), r = 8 * unit;
      const m = el("circle", {cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1),
        fill: COLOR[p.status] || COLOR.off, stroke: "#111827", "stroke-width": unit,
        class: "duty-post " + p.status});
      m.dataset.id = p.post_id;
      m.appendChild(el("title", {}, `${p.name}: ${NAMES[p.status] || p.status} ${p.present}/${p.required}`));
      frag.appendChild(m);
      if (p.status !== "off") {
        frag.appendChild(el("text", {x: (x + r * 1.2).toFixed(1), y: (y + r * 0.4).toFixed(1),
          "font-size": (14 * unit).toFixed(1), fill: "#f9fafb", class: "duty-count"}, `${p.present}/${p.required}`));
      }
    }
    g.replaceChildren(frag);
    const b = banner(), ph = state.phase;
    if (ph && ph.name) {
      b.textContent = `勤务阶段 Phase: ${ph.name} · ` + (ph.source === "operator"
        ? `人工设定 set by ${ph.by}` : "按计划 schedule" + (ph.by ? ` (恢复 by ${ph.by})` : ""));
      b.dataset.source = ph.source;
      b.hidden = false;
    } else {
      b.hidden = true;
    }
  }

  async function poll() {
    try {
      const [posts, cps, phase] = await Promise.all([get("/posts"), get("/checkpoints"), get("/plan/phase")]);
      state.posts = posts || [];
      state.checkpoints = cps || [];
      state.phase = phase;
      draw();
    } catch (e) {
      // the wall's own connection badge tells the operator; try again at the next poll
    }
  }

  poll();
  setInterval(poll, POLL_MS);
})();
