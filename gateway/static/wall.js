"use strict";
// The wall (issue 24: gateway/static/html.js puts every value into the page, escaped; the page's
// Content-Security-Policy runs no script but this file and html.js).
const LEVELS = ["red", "orange", "yellow", "green"];
const COLORS = {green: "#2fa864", yellow: "#e8c21f", orange: "#f2861e", red: "#e5383b"};
const NO_DATA = "#4a5563";
const LEVEL_NAMES = {red: "紧急 Critical", orange: "警戒 Alert", yellow: "关注 Watch", green: "正常 Normal"};
const SVGNS = "http://www.w3.org/2000/svg";
// A zone's picture is not trustworthy (docs/GATEWAY.md "Health on the wall"): a camera is silent, or units stopped
// reporting there and none is present, or no patrol fix came from inside for GPS_STALE_S.
const GPS_STALE_S = 900;
const REACH_COLOR = "#e5383b";
const PROBE_RADIUS_M = 5000, PROBE_UNITS = 8;

// ---- token: ?token= once, then this tab's sessionStorage (kept out of the address bar)
const params = new URLSearchParams(location.search);
let token = params.get("token") || sessionStorage.getItem("zw-token") || "";
if (params.has("token")) {
  sessionStorage.setItem("zw-token", token);
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
}

const $ = (id) => document.getElementById(id);
const docs = new Map();          // zone_id -> latest state document (highest version)
const incidents = new Map();     // call_id -> open incident (zw:incidents)
const recent = new Map();        // call_id -> {inc, until}: just arrived, shown a little longer
const RECENT_MS = 30000;
const zones = [];                // from the GeoJSON, in file order
const zoneById = new Map();      // zone_id -> its entry in `zones`
const zoneEls = new Map();       // zone_id -> {path, label, cnt}
const dirty = new Set();
let lastId = null, es = null, retryMs = 1000, frame = 0;
let lastUpdateAt = 0, tz = "Asia/Shanghai";
let clockMs = 0, clockSeenAt = 0;
let center = null, radiusM = 5000;
let layer = "level";             // map fill: "level" or "reach" (share not reached within 3 min)
let selected = null;             // call_id whose timeline is open
let pxPerM = 1;
const unitPos = new Map();       // unit_id -> {lat, lon} from the last /units poll
window.__zw = {docs, incidents, unitPos, get lastId() { return lastId; }, get layer() { return layer; }};

function setConn(state, text) {
  const el = $("conn");
  el.dataset.state = state;
  el.querySelector(".v").textContent = text;
}

async function api(path) {
  const r = await fetch(path, {headers: {Authorization: "Bearer " + token}, cache: "no-store"});
  if (r.status === 401) { setConn("unauthorized", "未授权 Unauthorized (?token=)"); throw new Error("401"); }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function emWidth(text) {   // rough rendered width in em: CJK glyphs are square, Latin ~0.58
  let w = 0;
  for (const ch of text) w += /[\u2e80-\u9fff\uff00-\uffef]/.test(ch) ? 1 : 0.58;
  return w;
}

function splitName(name) {
  const i = name.indexOf(" / ");
  return i < 0 ? [name, ""] : [name.slice(0, i), name.slice(i + 3)];
}

// ---- map: equirectangular projection fitted to the zones' bounds
function rings(geom) {
  return geom.type === "Polygon" ? [geom.coordinates] : geom.coordinates;
}

function lines(geom) {   // a route segment's centre line: LineString or MultiLineString
  return !geom ? [] : geom.type === "LineString" ? [geom.coordinates] : geom.type === "MultiLineString" ? geom.coordinates : [];
}

function kmLabel(m) { return (m / 1000).toFixed(3).replace(/\.?0+$/, ""); }

function drawMap(fc) {
  let minLon = Infinity, maxLon = -Infinity, minLat = Infinity, maxLat = -Infinity;
  for (const f of fc.features) for (const poly of rings(f.geometry)) for (const ring of poly)
    for (const [lon, lat] of ring) {
      minLon = Math.min(minLon, lon); maxLon = Math.max(maxLon, lon);
      minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
    }
  const kx = Math.cos((minLat + maxLat) / 2 * Math.PI / 180);
  const W = 1000, s = W / Math.max((maxLon - minLon) * kx, 1e-9), H = Math.max((maxLat - minLat) * s, 1);
  const pad = Math.max(W, H) * 0.03;
  const map = $("map");
  map.setAttribute("viewBox", `${-pad} ${-pad} ${W + 2 * pad} ${H + 2 * pad}`);
  const px = (lon, lat) => [(lon - minLon) * kx * s, (maxLat - lat) * s];
  center = [(minLat + maxLat) / 2, (minLon + maxLon) / 2];
  const dLat = (maxLat - minLat) * 111320, dLon = (maxLon - minLon) * 111320 * kx;
  radiusM = Math.min(100000, Math.hypot(dLat, dLon) / 2 + 1000);
  const unit = Math.max(W, H) / 1000;   // one "pixel" of the 1000-wide design
  map.dataset.unit = unit;
  pxPerM = s / 111320;                  // one degree of latitude is ~111.32 km
  window.__zw.unproject = (x, y) => [maxLat - y / s, minLon + x / (kx * s)];

  const items = fc.features.map((f) => {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, d = "";
    for (const poly of rings(f.geometry)) for (const ring of poly) {
      ring.forEach(([lon, lat], i) => {
        const [x, y] = px(lon, lat);
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        d += (i ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
      });
      d += "Z";
    }
    return {f, d, x0, x1, y0, y1, area: (x1 - x0) * (y1 - y0)};
  });
  items.sort((a, b) => b.area - a.area);   // nested rings: the larger below, the core on top
  const gz = $("g-zones"), gl = $("g-labels"), gc = $("g-course");
  const labels = [], courses = new Map();
  for (const it of items) {
    const id = String(it.f.id), p = it.f.properties || {};
    const isPoint = Array.isArray(p.center) && p.radius_m > 0;
    const isSeg = p.route_id != null && p.line;
    let path;
    if (isPoint) {            // a point zone (emergency point, barrier, gate): its circle
      const [cx, cy] = px(p.center[1], p.center[0]);
      path = document.createElementNS(SVGNS, "circle");
      path.setAttribute("cx", cx.toFixed(1)); path.setAttribute("cy", cy.toFixed(1));
      path.setAttribute("r", Math.max(p.radius_m * pxPerM, 1.5 * unit).toFixed(2));
      path.setAttribute("class", "zone point");
    } else {
      path = document.createElementNS(SVGNS, "path");
      path.setAttribute("d", it.d);
      path.setAttribute("class", isSeg ? "zone seg" : "zone");
      path.setAttribute("fill-rule", "evenodd");
    }
    path.dataset.zone = id;
    path.setAttribute("fill", NO_DATA);
    path.setAttribute("stroke", NO_DATA);
    const title = document.createElementNS(SVGNS, "title");
    title.textContent = p.name || id;
    path.appendChild(title);
    gz.appendChild(path);
    let course = null;
    if (isSeg) {              // the course: the segment's centre line, coloured by its level
      let d = "";
      for (const ln of lines(p.line)) ln.forEach(([lon, lat], i) => {
        const [x, y] = px(lon, lat);
        d += (i ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
      });
      course = document.createElementNS(SVGNS, "path");
      course.setAttribute("class", "course-seg");
      course.setAttribute("d", d);
      course.setAttribute("stroke", NO_DATA);
      course.dataset.zone = id;
      course.dataset.route = p.route_id;
      course.dataset.k = p.segment;
      if (!courses.has(p.route_id)) courses.set(p.route_id, []);
      courses.get(p.route_id).push({p, course});
    }
    if (isSeg || isPoint) {   // small zones: no label of their own (the table and the hover have them)
      zoneEls.set(id, {path, course, label: null, cnt: null, warn: null, title});
      continue;
    }

    // label: name and "calls | alerts"; ring zones (outer, inner) get one line in their top band
    // so that nested rings do not cover each other's labels
    const bw = it.x1 - it.x0, bh = it.y1 - it.y0;
    const [zh] = splitName(p.name || id);
    const short = zh.length > 12 ? zh.slice(0, 11) + "…" : zh;
    const ringZone = p.ring === "outer" || p.ring === "inner";
    const minFs = 7 * unit, maxFs = 22 * unit;
    const wName = emWidth(short), wCnt = emWidth("00 | 00");
    let fs, withName;
    if (ringZone) {
      fs = Math.min(maxFs, bh / 9, bw / (wName + wCnt + 1));
      withName = fs >= minFs;
      if (!withName) fs = Math.min(maxFs, bh / 9, bw / wCnt);
    } else {
      fs = Math.min(maxFs, bh / 3, bw / Math.max(wName, wCnt) / 1.1);
      withName = fs >= minFs;
      if (!withName) fs = Math.min(maxFs, bh / 1.5, bw / wCnt / 1.1);
    }
    fs = Math.max(minFs, fs);
    const cx = (it.x0 + it.x1) / 2;
    const cy = ringZone ? it.y0 + fs * 1.15 : (it.y0 + it.y1) / 2 + (withName ? -0.1 * fs : 0.35 * fs);
    const label = document.createElementNS(SVGNS, "text");
    label.setAttribute("class", "lbl");
    label.dataset.zone = id;
    label.setAttribute("x", cx.toFixed(1));
    label.setAttribute("y", cy.toFixed(1));
    label.setAttribute("font-size", fs.toFixed(1));
    label.setAttribute("stroke-width", (fs / 6).toFixed(2));
    if (withName) {
      const nameSpan = document.createElementNS(SVGNS, "tspan");
      nameSpan.setAttribute("class", "nm");
      if (!ringZone) nameSpan.setAttribute("x", cx.toFixed(1));
      nameSpan.textContent = short + (ringZone ? "  " : "");
      label.appendChild(nameSpan);
    }
    const cnt = document.createElementNS(SVGNS, "tspan");
    cnt.setAttribute("class", "cnt");
    if (withName && !ringZone) {
      cnt.setAttribute("x", cx.toFixed(1));
      cnt.setAttribute("dy", "1.15em");
    }
    cnt.textContent = "– | –";
    label.appendChild(cnt);
    const warn = document.createElementNS(SVGNS, "tspan");
    warn.setAttribute("class", "warn");
    label.appendChild(warn);
    gl.appendChild(label);
    zoneEls.set(id, {path, course: null, label, cnt, warn, title});
    labels.push({label, cnt, name: label.querySelector(".nm"), ringZone, y1: cy, y2: (it.y0 + it.y1) / 2 + 0.35 * fs,
                 prio: p.ring ? RING_PRIO[p.ring] : 10 + it.area / (W * H)});
  }
  declutter(labels);
  drawCourses(courses, px, unit, gc);
  for (const f of fc.features) {
    const p = f.properties || {};
    const [zh, en] = splitName(p.name || String(f.id));
    zones.push({id: String(f.id), zh, en, order: zones.length});
    zoneById.set(String(f.id), zones[zones.length - 1]);
  }
  window.__zw.project = px;
}

// Route segments in course order, then a km mark at the start of every segment and at the finish.
function drawCourses(courses, px, unit, gc) {
  for (const [rid, segs] of courses) {
    segs.sort((a, b) => a.p.segment - b.p.segment);
    const g = document.createElementNS(SVGNS, "g");
    g.setAttribute("class", "course");
    g.dataset.route = rid;
    for (const {course} of segs) g.appendChild(course);
    const marks = segs.map(({p}) => ({m: p.start_m, at: lines(p.line)[0]?.[0], k: p.segment}));
    const last = segs[segs.length - 1].p, lastLine = lines(last.line);
    const end = lastLine.length ? lastLine[lastLine.length - 1] : [];
    marks.push({m: last.end_m, at: end[end.length - 1], k: last.segment + 1});
    // about 12 marks along the course at most, the finish always (a 42 km course: every 4 km)
    const every = Math.max(1, Math.ceil(marks.length / 12));
    marks.forEach((mk, i) => {
      if (!mk.at || (i % every && i !== marks.length - 1)) return;
      const [x, y] = px(mk.at[0], mk.at[1]);
      const km = document.createElementNS(SVGNS, "g");
      km.setAttribute("class", "km");
      km.dataset.k = mk.k;
      km.dataset.route = rid;
      const c = document.createElementNS(SVGNS, "circle");
      c.setAttribute("cx", x.toFixed(1)); c.setAttribute("cy", y.toFixed(1)); c.setAttribute("r", (3.5 * unit).toFixed(1));
      const t = document.createElementNS(SVGNS, "text");
      t.setAttribute("x", x.toFixed(1)); t.setAttribute("y", (y - 6 * unit).toFixed(1));
      t.setAttribute("font-size", (11 * unit).toFixed(1)); t.setAttribute("stroke-width", (2 * unit).toFixed(1));
      t.textContent = kmLabel(mk.m) + " km";
      km.append(c, t);
      g.appendChild(km);
    });
    gc.appendChild(g);
  }
}

// Labels of overlapping zones must not print over each other: rings first (the venue), then the
// smaller zones; a label that collides loses its name line, then, if it still collides, is hidden
// (its zone keeps its colour, and the side table has its figures).
const RING_PRIO = {core: 0, inner: 1, outer: 2};

function declutter(labels) {
  const placed = [];
  const hit = (b) => placed.some((q) => b.x < q.x + q.width && q.x < b.x + b.width && b.y < q.y + q.height && q.y < b.y + b.height);
  labels.sort((a, b) => a.prio - b.prio);
  for (const L of labels) {
    L.cnt.textContent = "00 | 00";          // measure with typical figures
    let b = L.label.getBBox();
    if (hit(b) && L.name) {
      L.name.remove();
      L.cnt.removeAttribute("dy");
      if (!L.ringZone) L.label.setAttribute("y", L.y2.toFixed(1));
      b = L.label.getBBox();
    }
    L.cnt.textContent = "– | –";
    if (hit(b)) { L.label.setAttribute("visibility", "hidden"); continue; }
    placed.push(b);
  }
}

// ---- rendering (batched per animation frame)
function schedule() { if (!frame) frame = requestAnimationFrame(render); }

function num(n) {
  return n ? html`${n}` : html`<span class="zero">0</span>`;
}

// ---- a zone's response over the last 60 min (CONTRACT §3 `response`, as `zonewatch watch` shows it):
// the shares of its decided calls (reached within 5 min, or breached) reached within 1/3/5 min, its
// breaches, its p50/p90 response.
function fmtResp(s) {
  return typeof s === "number" ? fmtDur(s) : "–";
}

const NO_RESPONSE_CELLS = html`<td class="c-135">–</td><td class="c-breach">–</td><td class="c-p50">–</td>`;

function responseCells(d) {
  const r = d && d.response;
  if (!r) return NO_RESPONSE_CELLS;
  const n = (v) => (typeof v === "number" ? v : 0);
  const decided = n(r.within_5m) + n(r.breaches);
  const share = (v) => (decided ? Math.round(100 * n(v) / decided) + "%" : "–");
  const title = `近 60 分钟 last 60 min: 已判定 decided ${decided} · 到场 arrived ${n(r.arrived)} · ` +
    `1/3/5 分钟内 within ${n(r.within_1m)}/${n(r.within_3m)}/${n(r.within_5m)} · 超时 breaches ${n(r.breaches)}`;
  return html`<td class="c-135" data-decided="${decided}" title="${title}">${share(r.within_1m)} / ${
    share(r.within_3m)} / ${share(r.within_5m)}</td><td class="c-breach${n(r.breaches) ? " bad" : ""}">${
    n(r.breaches)}</td><td class="c-p50">${fmtResp(r.p50_s)} / ${fmtResp(r.p90_s)}</td>`;
}

const NO_DATA_CELLS = html`<td class="c-calls">–</td><td class="c-alerts">–</td><td class="c-5m">–</td><td class="c-units">–</td><td class="c-open">–</td>${NO_RESPONSE_CELLS}<td class="c-reach">–</td><td class="c-health">–</td>`;

// Trust (docs/GATEWAY.md "Health on the wall"): the reasons a zone's picture cannot be trusted, [] when it can.
// Seconds since each source's last event inside the zone: last_event_ts (CONTRACT §3 v3) against the
// document's stream clock, or now without one; a worker before v3 sent the ages themselves.
function eventAges(d) {
  const h = d.health, last = h.last_event_ts, now = typeof d.clock === "number" ? d.clock : Date.now();
  if (!last) return h.last_event_age_s || {};
  const age = (ts) => typeof ts === "number" ? Math.max(0, (now - ts) / 1000) : null;
  return {calls: age(last.calls), gps: age(last.gps), alerts: age(last.alerts)};
}

function distrust(d) {
  const h = d && d.health;
  if (!h) return [];
  const out = [], age = eventAges(d);
  if (h.cameras_silent > 0) out.push(`${h.cameras_silent}/${h.cameras_known} 摄像头静默 cameras silent`);
  if (h.units_quiet > 0 && !(d.units && d.units.present > 0)) out.push(`${h.units_quiet} 警力失联 units quiet, none present`);
  if (age.gps != null && age.gps > GPS_STALE_S) out.push(`${fmtAge(age.gps)} 无定位 no patrol fix`);
  return out;
}

function fmtAge(s) {
  if (s == null) return "—";
  s = Math.round(s);
  return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}

function healthLines(d) {
  const h = d && d.health;
  if (!h) return "健康 Health: —";
  const a = eventAges(d);
  return `摄像头 Cameras: ${h.cameras_known} known, ${h.cameras_silent} silent\n` +
    `警力 Units: ${d.units ? d.units.present : 0} present, ${h.units_quiet} quiet\n` +
    `最近事件 Last event: calls ${fmtAge(a.calls)}, gps ${fmtAge(a.gps)}, alerts ${fmtAge(a.alerts)} ago`;
}

function reachOf(d) {
  const r = d && d.reach;
  return r && typeof r.within_3m === "number" ? r : null;
}

function pct(x) { return Math.round(x * 100) + "%"; }

function render() {
  frame = 0;
  for (const id of dirty) {
    const els = zoneEls.get(id), d = docs.get(id);
    if (!els) continue;
    const color = d ? (own(COLORS, d.level) || NO_DATA) : NO_DATA;
    const reach = reachOf(d), why = distrust(d);
    if (layer === "reach") {   // shade what no available unit reaches in 3 min (per zone: its share)
      els.path.setAttribute("fill", reach ? REACH_COLOR : NO_DATA);
      els.path.style.fillOpacity = reach ? (0.05 + 0.8 * (1 - reach.within_3m)).toFixed(3) : "0.15";
    } else {
      els.path.setAttribute("fill", color);
      els.path.style.fillOpacity = "";
    }
    els.path.setAttribute("stroke", color);
    if (els.course) els.course.setAttribute("stroke", color);
    els.path.dataset.level = d ? d.level : "none";
    els.path.dataset.reach = reach ? reach.within_3m : "";
    els.path.dataset.trust = why.length ? "untrusted" : d ? "ok" : "none";
    const zone = zoneById.get(id);
    els.title.textContent = `${zone ? zone.zh + (zone.en ? " " + zone.en : "") : id}\n` +
      (why.length ? `⚠ 不可信 Not trustworthy: ${why.join("; ")}\n` : "") + healthLines(d) +
      (reach ? `\n3/5分钟可达 Reach: ${pct(reach.within_3m)} / ${pct(reach.within_5m)}` : "");
    if (els.cnt) els.cnt.textContent = d ? `${d.today.calls} | ${d.today.alerts}` : "– | –";
    if (els.warn) els.warn.textContent = why.length ? " ⚠" : "";
  }
  dirty.clear();
  renderTable();
  renderHeader();
  renderIncidents();
}

function renderTable() {
  const rank = (id) => { const d = docs.get(id); return d ? LEVELS.indexOf(d.level) : 9; };
  const sorted = zones.slice().sort((a, b) => rank(a.id) - rank(b.id) || a.order - b.order);
  const rows = sorted.map((z) => {
    const d = docs.get(z.id);
    const lvl = d ? d.level : "none";
    const name = [html`<span class="chip ${lvl}" title="${own(LEVEL_NAMES, lvl) || "无数据 No data"}"></span>`,
      html`<span class="zh">${z.zh}</span>`, z.en ? html`<span class="en">${z.en}</span>` : ""];
    if (!d) return html`<tr data-zone="${z.id}" data-level="none"><td class="name">${name}</td>${NO_DATA_CELLS}</tr>`;
    const w5 = d.windows && d.windows["5m"] || {calls: 0, alerts: 0};
    const u = d.units || {present: 0, available: 0};
    const reach = reachOf(d), why = distrust(d), h = d.health, trust = why.length ? "untrusted" : "ok";
    const cells = [
      html`<td class="c-calls">${num(d.today.calls)}</td>`,
      html`<td class="c-alerts">${num(d.today.alerts)}</td>`,
      html`<td class="c-5m">${num(w5.calls)} / ${num(w5.alerts)}</td>`,
      html`<td class="c-units">${num(u.present)} / ${num(u.available)}</td>`,
      html`<td class="c-open">${num(d.open_incidents || 0)}</td>`,
      responseCells(d),
      reach ? html`<td class="c-reach${reach.within_3m < 0.5 ? " low" : ""}"
                       title="3 min ${pct(reach.within_3m)}, 5 min ${pct(reach.within_5m)}">${pct(reach.within_3m)}</td>`
            : html`<td class="c-reach">–</td>`,
      !h ? html`<td class="c-health">–</td>`
         : html`<td class="c-health${why.length ? " warn" : ""}" data-trust="${trust}"
                    title="${(why.length ? "⚠ " + why.join("; ") + "\n" : "") + healthLines(d)}"
                    >${why.length ? "⚠ " : "✓ "}${h.cameras_silent}/${h.cameras_known} · ${h.units_quiet}</td>`];
    return html`<tr data-zone="${z.id}" data-level="${lvl}" data-trust="${trust}"><td class="name">${name}</td>${cells}</tr>`;
  });
  setHTML($("rows"), html`${rows}`);
  const nBad = zones.filter((z) => distrust(docs.get(z.id)).length).length;
  setHTML($("untrusted-n"), html`<b>${nBad}</b>`);
}

function fmtClock(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms) || !ms) return "—";
  try {
    return new Intl.DateTimeFormat("zh-CN", {timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false}).format(new Date(ms));
  } catch (e) { return new Date(ms).toISOString(); }
}

function renderHeader() {
  let maxClock = 0;
  const counts = {red: 0, orange: 0, yellow: 0, green: 0, none: 0};
  for (const z of zones) {
    const d = docs.get(z.id);
    if (!d) { counts.none++; continue; }
    maxClock = Math.max(maxClock, d.clock || 0);
    if (Object.hasOwn(counts, d.level)) counts[d.level]++;
  }
  if (maxClock !== clockMs) { clockMs = maxClock; clockSeenAt = Date.now(); }
  $("clock").querySelector(".v").textContent = fmtClock(clockMs) + (clockMs ? ` (${tz})` : "");
  setHTML($("levels"), html`${LEVELS.map((l) =>
    html`<span data-level="${l}"><span class="chip ${l}"></span>${LEVEL_NAMES[l]} <b>${counts[l]}</b></span>`)}${
    counts.none ? html`<span data-level="none"><span class="chip"></span>无数据 No data <b>${counts.none}</b></span>` : ""}`);
}

function fmtDur(s) {
  s = Math.max(0, Math.floor(s));
  const m = Math.floor(s / 60), r = s % 60;
  return `${m}:${String(r).padStart(2, "0")}`;
}

const CATEGORY = {violent: "暴力 Violent", theft: "盗窃 Theft", fraud: "诈骗 Fraud", traffic: "交通 Traffic",
  fire: "火情 Fire", medical: "急救 Medical", dispute: "纠纷 Dispute", public_order: "治安 Public order",
  lost_and_found: "失物 Lost & found", assistance: "求助 Assistance", other: "其他 Other"};

// The stream clock keeps running between documents, so timers tick on a replay too.
function streamNow() { return clockMs ? clockMs + (Date.now() - clockSeenAt) : 0; }

// 1-3-5 minute rule: the timer's colour says which target an arrival now would still meet.
function timerClass(age, inc) {
  if (inc.status === "breached" || age > 300) return "breach";
  return age <= 60 ? "t1" : age <= 180 ? "t3" : "t5";
}

let refreshTimer = 0;
function applyIncident(inc) {
  if (inc.call_id === selected) {   // its timeline is open: read it again (written with the wall entry)
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { if (selected === inc.call_id) openTimeline(inc.call_id); }, 300);
  }
  if (inc.status === "open" || inc.status === "breached") {
    incidents.set(inc.call_id, inc);
    recent.delete(inc.call_id);
  } else {
    if (incidents.has(inc.call_id) && inc.status === "arrived")
      recent.set(inc.call_id, {inc, until: Date.now() + RECENT_MS});
    incidents.delete(inc.call_id);
  }
}

function zoneName(inc) {
  for (const zid of inc.zones || []) {         // the innermost (smallest) first when known
    const z = zoneById.get(zid);
    if (z && (!inc.ring || docs.get(zid)?.ring === inc.ring)) return z;
  }
  const z0 = (inc.zones || [])[0];
  return z0 ? zoneById.get(z0) || {zh: z0, en: ""} : {zh: "区域外", en: "outside zones"};
}

function renderIncidents() {
  const now = Date.now();
  for (const [cid, r] of recent) if (r.until < now) recent.delete(cid);
  const open = [...incidents.values()].sort((a, b) => a.ts - b.ts);
  const nBreached = open.filter((i) => i.status === "breached").length;
  $("inc-total").textContent = open.length ? `· ${open.length}${nBreached ? ` (超时 breached ${nBreached})` : ""}` : "";
  const list = $("inc-list"), sn = streamNow();
  const row = (inc, arrived) => {
    const z = zoneName(inc), p = inc.priority || "?";
    const near = (inc.nearest_units || [])[0];
    const sub = arrived ? html` · ${inc.unit_id} 到场 arrived` :
      near ? html` · 最近 nearest ${near.unit_id} · ${Math.round(near.distance_m)} m · ~${fmtDur(near.eta_s)}` : "";
    const age = sn ? (sn - inc.ts) / 1000 : 0;
    const timer = arrived
      ? html`<span class="timer" title="响应时间 response time">${fmtDur(inc.response_s)}</span>`
      : html`<span class="timer ${timerClass(age, inc)}" data-ts="${inc.ts}" data-status="${inc.status}">${fmtDur(age)}</span>`;
    return html`<li data-call="${inc.call_id}" data-status="${inc.status}" class="${arrived ? "arrived" : ""}"
      ><span class="what"><span><span class="prio p${p}">P${p}</span>${own(CATEGORY, inc.category) || inc.category} · ${z.zh}${
      z.en ? html` <span class="en">${z.en}</span>` : ""}</span><span class="sub">${inc.call_id}${sub}</span></span>${timer}</li>`;
  };
  const items = [...open.map((i) => row(i, false)), ...[...recent.values()].map((r) => row(r.inc, true))];
  setHTML(list, items.length ? html`${items}` : html`<li class="empty">无进行中事件 No open incidents</li>`);
  $("inc-note").textContent = "计时：自接警起（流时钟），1/3/5 分钟目标 Timer: since the call (stream clock), 1-3-5 minute targets";
  renderIncidentMarkers(open);
}

function renderIncidentMarkers(open) {
  const px = window.__zw.project;
  if (!px) return;
  const unit = Number($("map").dataset.unit || 1), frag = document.createDocumentFragment();
  for (const inc of open) {
    const [x, y] = px(inc.lon, inc.lat);
    const c = document.createElementNS(SVGNS, "circle");
    c.setAttribute("class", "inc" + (inc.status === "breached" ? " breached" : "") + (inc.call_id === selected ? " sel" : ""));
    c.setAttribute("cx", x.toFixed(1)); c.setAttribute("cy", y.toFixed(1));
    c.setAttribute("r", (9 * unit).toFixed(1));
    c.dataset.call = inc.call_id;
    const t = document.createElementNS(SVGNS, "title");
    t.textContent = `${inc.call_id} P${inc.priority} ${inc.category}`;
    c.appendChild(t);
    frag.appendChild(c);
  }
  $("g-incidents").replaceChildren(frag);
}

$("inc-list").addEventListener("click", (ev) => {
  const li = ev.target.closest("li[data-call]");
  if (li) openTimeline(li.dataset.call);
});

function tick() {
  $("fresh").querySelector(".v").textContent = lastUpdateAt
    ? `${((Date.now() - lastUpdateAt) / 1000).toFixed(lastUpdateAt > Date.now() - 10000 ? 1 : 0)} 秒前 s ago` : "—";
  const sn = streamNow();
  for (const t of document.querySelectorAll("#inc-list .timer[data-ts]")) {
    const age = (sn - Number(t.dataset.ts)) / 1000;
    t.textContent = fmtDur(age);
    t.className = "timer " + timerClass(age, {status: t.dataset.status});
  }
  if (recent.size && [...recent.values()].some((r) => r.until < Date.now())) schedule();
}

// ---- live feed: EventSource reconnects by itself and sends Last-Event-ID; when it gives up
// (HTTP error) we open a new one that resumes with ?last_event_id=
function connect() {
  const q = new URLSearchParams({token});
  if (lastId) q.set("last_event_id", lastId);
  es = new EventSource("/stream?" + q);
  es.addEventListener("open", () => { retryMs = 1000; setConn("live", "实时 Live"); });
  es.addEventListener("snapshot", (e) => {
    const arr = JSON.parse(e.data);
    docs.clear();
    for (const d of arr) docs.set(d.zone_id, d);
    for (const id of zoneEls.keys()) dirty.add(id);
    if (e.lastEventId) lastId = e.lastEventId;
    lastUpdateAt = Date.now();
    setConn("live", "实时 Live");
    schedule();
  });
  es.addEventListener("zone", (e) => {
    const d = JSON.parse(e.data), cur = docs.get(d.zone_id);
    if (!cur || d.version > cur.version) {  // an update may repeat one the snapshot already had
      docs.set(d.zone_id, d);
      dirty.add(d.zone_id);
      schedule();
    }
    lastId = e.lastEventId || lastId;
    lastUpdateAt = Date.now();
  });
  es.addEventListener("incidents", (e) => {   // all open incidents: after a snapshot or a resume
    incidents.clear();
    for (const inc of JSON.parse(e.data)) incidents.set(inc.call_id, inc);
    schedule();
  });
  es.addEventListener("incident", (e) => { applyIncident(JSON.parse(e.data)); schedule(); });
  es.addEventListener("resync", () => setConn("live", "重新同步 Resyncing"));
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CLOSED) {
      setConn("down", `断开，${Math.round(retryMs / 1000)} 秒后重连 Disconnected, retrying`);
      es.close();
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    } else {
      setConn("reconnecting", "重连中 Reconnecting");
    }
  });
}

async function pollUnits() {
  if (!center) return;
  try {
    const units = await api(`/units?near=${center[0]},${center[1]}&radius=${Math.round(radiusM)}&limit=5000`);
    const g = $("g-units"), px = window.__zw.project, unit = Number($("map").dataset.unit || 1);
    const frag = document.createDocumentFragment();
    unitPos.clear();
    for (const u of units) {
      unitPos.set(u.unit_id, u);
      const [x, y] = px(u.lon, u.lat);
      const c = document.createElementNS(SVGNS, "circle");
      c.setAttribute("class", "unit");
      c.setAttribute("cx", x.toFixed(1)); c.setAttribute("cy", y.toFixed(1));
      c.setAttribute("r", (4 * unit).toFixed(1));
      c.dataset.unit = u.unit_id;
      const t = document.createElementNS(SVGNS, "title");
      t.textContent = `${u.unit_id} · ${own(UNIT_KIND, u.kind) || u.kind || ""} · ${own(UNIT_STATUS, u.status) || u.status || ""}`;
      c.appendChild(t);
      frag.appendChild(c);
    }
    g.replaceChildren(frag);
  } catch (e) { /* shown by the connection badge; retried on the next poll */ }
}

const UNIT_KIND = {foot: "步巡 foot", car: "车巡 car", motorcycle: "摩托 motorcycle", swat: "特警 SWAT", other: "其他 other"};
const UNIT_STATUS = {available: "可用 available", busy: "出警 busy", off_duty: "下岗 off duty"};
const WHAT = {call: "接警 call", recommended: "推荐警力 units recommended", alert: "告警 alert", breach: "超时 breach",
  arrived: "到场 arrived", expired: "过期 expired"};

// ---- the detail panel: an incident's timeline, or the units nearest a clicked point
function openDetail(fragment, kind) {
  const el = $("detail");
  setHTML(el, fragment);
  el.dataset.kind = kind;
  el.classList.add("open");
  el.querySelector(".close").addEventListener("click", closeDetail);
}

function closeDetail() {
  const el = $("detail");
  el.classList.remove("open");
  el.dataset.kind = "";
  el.replaceChildren();
  selected = null;
  $("g-focus").replaceChildren();
  schedule();
}

function svgEl(tag, attrs, cls) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, typeof v === "number" ? v.toFixed(1) : v);
  if (cls) e.setAttribute("class", cls);
  return e;
}

function fmtTime(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  try {
    return new Intl.DateTimeFormat("zh-CN", {timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit",
      hour12: false}).format(new Date(ms));
  } catch (e) { return new Date(ms).toISOString().slice(11, 19); }
}

async function openTimeline(callId) {
  let t;
  try {
    t = await api("/incidents/" + encodeURIComponent(callId));
  } catch (e) {
    openDetail(html`<h3><span>事件 Incident ${callId}</span><button class="close" type="button">×</button></h3>
      <p class="muted">时间线不可用 No timeline (${e.message})</p>`, "timeline");
    return;
  }
  selected = callId;
  const c = t.call || {}, z = zoneName({zones: t.zones, ring: t.ring});
  const none = html`<li class="muted">无 none</li>`;
  const units = (t.nearest_units || []).map((u) =>
    html`<li data-unit="${u.unit_id}">${u.unit_id} · ${own(UNIT_KIND, u.kind) || u.kind} · ${Math.round(u.distance_m)} m · ETA ${
      fmtDur(u.eta_s)}${unitAtCallNote(u)}</li>`);
  const alerts = (t.corroborating_alerts || []).map((a) =>
    html`<li data-alert="${a.alert_id}">${a.alert_id} · ${a.type} · ${Math.round(a.distance_m)} m · ${
      a.dt_s >= 0 ? "+" : ""}${Math.round(a.dt_s)} s</li>`);
  const outcome =
    t.arrival ? html`<span class="ok">到场 Arrived</span> ${t.arrival.unit_id} · ${fmtDur(t.arrival.response_s)} · ${
      fmtTime(t.arrival.ts)}` :
    t.breach ? html`<span class="bad">超时 Breached</span> ${fmtTime(t.breach.ts)}` :
    html`<span class="muted">${t.status === "expired" ? "过期 Expired" : "进行中 Open"}</span>`;
  const events = (t.events || []).map((e) => {
    const extra = e.what === "alert" ? html` ${e.alert_id} (${e.type}, ${Math.round(e.distance_m)} m)` :
      e.what === "recommended" ? html` ${(e.unit_ids || []).join(", ")}` :
      e.what === "arrived" ? html` ${e.unit_id} · ${fmtDur(e.response_s)}` : "";
    return html`<li data-what="${e.what}">${fmtTime(e.ts)} ${own(WHAT, e.what) || e.what}${extra}</li>`;
  });
  openDetail(html`<h3><span>事件 Incident ${t.call_id}</span><button class="close" type="button" title="关闭 close">×</button></h3>
    <div><span class="prio p${c.priority}">P${c.priority}</span> ${own(CATEGORY, c.category) || c.category} · ${z.zh}${
      z.en ? html` <span class="muted">${z.en}</span>` : ""}${t.ring ? html` · ${t.ring}` : ""}</div>
    <div class="muted">接警 Call ${fmtTime(c.ts)}${c.lang ? html` · ${c.lang}` : ""}${c.text ? html` · ${c.text}` : ""}</div>
    <div class="outcome" data-status="${t.status}">${outcome}</div>
    <h4>推荐警力（接警时）Recommended units at call time</h4><ul class="rec">${units.length ? units : none}</ul>
    <h4>佐证告警 Corroborating camera alerts (300 m, ±10 min)</h4><ul class="alerts">${alerts.length ? alerts : none}</ul>
    <h4>时间线（流时钟）Timeline (stream clock)</h4><ol class="events">${events}</ol>`, "timeline");
  focusIncident(t, c);
  schedule();
}

// On the map: the call, its corroborating cameras (at their position when the timeline carries one,
// else a dashed ring at their distance from the call) and its recommended units (where they were at
// the call's ts, drawUnitsAtCall).
function focusIncident(t, c) {
  const px = window.__zw.project, unit = Number($("map").dataset.unit || 1), g = $("g-focus");
  g.replaceChildren();
  if (!px || c.lat == null) return;
  const [x, y] = px(c.lon, c.lat);
  for (const a of t.corroborating_alerts || []) {
    const el = a.lat != null && a.lon != null
      ? svgEl("circle", {cx: px(a.lon, a.lat)[0], cy: px(a.lon, a.lat)[1], r: 4 * unit}, "cam")
      : svgEl("circle", {cx: x, cy: y, r: Math.max(a.distance_m * pxPerM, 2 * unit)}, "cam-ring");
    el.dataset.alert = a.alert_id;
    const tt = svgEl("title", {});
    tt.textContent = `${a.alert_id} ${a.type} ${Math.round(a.distance_m)} m`;
    el.appendChild(tt);
    g.appendChild(el);
  }
  drawUnitsAtCall(t, g, px, unit, x, y);
}

// ---- the recommended units where they were at the call's ts: the timeline carries the fix each was
// recommended from (lat, lon, ts); a unit added from processing-time positions beyond the exact
// search has none, stays off the map and says so in the list (unitAtCallNote).
function drawUnitsAtCall(t, g, px, unit, x, y) {
  for (const u of t.nearest_units || []) {
    if (typeof u.lat !== "number" || typeof u.lon !== "number") continue;
    const [ux, uy] = px(u.lon, u.lat);
    g.appendChild(svgEl("line", {x1: x, y1: y, x2: ux, y2: uy}, "link"));
    const ring = svgEl("circle", {cx: ux, cy: uy, r: 8 * unit}, "rec");
    ring.dataset.unit = u.unit_id;
    ring.dataset.at = "call";
    const tt = svgEl("title", {});
    tt.textContent = `${u.unit_id} · 接警时位置 at the call (${fmtTime(u.ts)}) · ${Math.round(u.distance_m)} m`;
    ring.appendChild(tt);
    g.appendChild(ring);
  }
}

function unitAtCallNote(u) {
  return typeof u.lat === "number"
    ? html` <span class="muted at-call">· 接警时位置 at the call ${fmtTime(u.ts)}</span>`
    : html` <span class="muted at-call">(接警时位置未知 position at the call unknown)</span>`;
}

// A click on the map (not on an incident): the nearest available units with their ETA.
async function probe(lat, lon) {
  let units;
  try {
    units = await api(`/units?near=${lat.toFixed(6)},${lon.toFixed(6)}&radius=${PROBE_RADIUS_M}&status=available&limit=200`);
  } catch (e) { return; }
  units.sort((a, b) => a.eta_s - b.eta_s || a.distance_m - b.distance_m);
  units = units.slice(0, PROBE_UNITS);
  window.__zw.lastProbe = {lat: Number(lat.toFixed(6)), lon: Number(lon.toFixed(6)), units};
  selected = null;
  const rows = units.map((u) =>
    html`<li data-unit="${u.unit_id}" data-eta="${u.eta_s}">${u.unit_id} · ${own(UNIT_KIND, u.kind) || u.kind} · ${
      Math.round(u.distance_m)} m · <b class="eta">ETA ${fmtDur(u.eta_s)}</b></li>`);
  const km = PROBE_RADIUS_M / 1000;
  openDetail(html`<h3><span>最近可用警力 Nearest available units</span><button class="close" type="button">×</button></h3>
    <div class="muted">${lat.toFixed(5)}, ${lon.toFixed(5)} · ${km} km 内 within · 按到达时间 by ETA</div>
    <ol class="units">${rows.length ? rows : html`<li class="muted">${km} km 内无可用警力 none within ${km} km</li>`}</ol>`,
    "units");
  const px = window.__zw.project, unit = Number($("map").dataset.unit || 1), g = $("g-focus");
  const [x, y] = px(lon, lat);
  const pg = svgEl("g", {}, "probe");
  for (const u of units) {
    const [ux, uy] = px(u.lon, u.lat);
    pg.appendChild(svgEl("line", {x1: x, y1: y, x2: ux, y2: uy}));
  }
  pg.appendChild(svgEl("circle", {cx: x, cy: y, r: 6 * unit}));
  g.replaceChildren(pg);
  schedule();
}

function onMapClick(ev) {
  const inc = ev.target.closest && ev.target.closest("circle.inc");
  if (inc) { openTimeline(inc.dataset.call); return; }
  const map = $("map"), un = window.__zw.unproject;
  if (!un) return;
  const pt = map.createSVGPoint();
  pt.x = ev.clientX; pt.y = ev.clientY;
  const p = pt.matrixTransform(map.getScreenCTM().inverse());
  const [lat, lon] = un(p.x, p.y);
  probe(lat, lon);
}

function setLayer(name) {
  layer = name;
  $("map").classList.toggle("layer-reach", name === "reach");
  $("layer-reach").setAttribute("aria-pressed", String(name === "reach"));
  for (const id of zoneEls.keys()) dirty.add(id);
  schedule();
}

async function pollStats() {
  const el = $("e2e").querySelector(".v"), win = $("e2e-win");
  try {
    const s = await api("/stats");
    tz = s.tz || tz;
    const e = s.e2e || {};
    if (e.p50_ms != null) {
      const f = (ms) => ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : Math.round(ms) + " ms";
      el.textContent = `p50 ${f(e.p50_ms)} · p99 ${f(e.p99_ms)}`;
      win.textContent = e.window_s ? `(近 ${Math.round(e.window_s)} 秒 last ${Math.round(e.window_s)} s)` : "(累计 since start)";
    } else {
      el.textContent = e.error ? "无法获取 unavailable" : "空闲 idle";
      win.textContent = "";
    }
    $("e2e").title = e.error ? e.error : "zonewatch_e2e_latency_seconds of the workers: Kafka producer timestamp to the Redis write";
  } catch (err) {
    el.textContent = "—";
    win.textContent = "";
  }
}

async function main() {
  try {
    drawMap(await api("/zones.geojson"));
  } catch (e) {
    if (e.message !== "401") setConn("down", "加载失败 Failed to load zones");
    return;
  }
  render();
  $("map").addEventListener("click", onMapClick);
  $("layer-reach").addEventListener("click", () => setLayer(layer === "reach" ? "level" : "reach"));
  connect();
  pollStats(); pollUnits();
  setInterval(pollStats, 5000);
  setInterval(pollUnits, 3000);
  setInterval(tick, 1000);
}
main();
