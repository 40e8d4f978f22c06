/* helio-tracker control-room page.  No libraries, no build step.
 *
 * Live data: GET /api/v1/stream (server-sent events read with fetch, so the bearer token can
 * go in a header for remote reads; reconnects by itself).  Fixed layers: /api/v1/sky and
 * /api/v1/plan.  Commands: POST /api/v1/<command> with "Authorization: Bearer <token>"; the
 * token is kept in sessionStorage (this tab only, gone when it closes).
 * Angles: azimuth from north through east, elevation up positive, degrees; times UTC.
 */
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "helio-tracker.token";
const HOUR_S = 3600;
const SVGNS = "http://www.w3.org/2000/svg";

const S = {
  status: {},          // merged status snapshot
  sky: null,           // /api/v1/sky
  plan: null,          // /api/v1/plan
  day: null,           // UTC day (unix s of 00:00) of the sky/plan layers
  events: new Map(),   // id -> event
  errRing: [],         // [t_s, error_arcsec|null]
  windRing: [],        // [t_s, wind_m_s|null]
  lastSample: 0,
  lastCharts: 0,
  faultKeys: "",
  connected: false,
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ formatting
function fmt(x, digits) {
  return (x === null || x === undefined || !Number.isFinite(x)) ? "—" : x.toFixed(digits);
}
function fmtArcsec(a) {
  if (a === null || a === undefined || !Number.isFinite(a)) return "—";
  if (a < 60) return `${a.toFixed(1)} arcsec`;
  if (a < 3600) return `${(a / 60).toFixed(2)} arcmin`;
  return `${(a / 3600).toFixed(3)} deg`;
}
function hm(t_s) {
  return new Date(t_s * 1000).toISOString().slice(11, 16);
}
function hms(t_s) {
  return new Date(t_s * 1000).toISOString().slice(11, 19);
}
function duration(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s % 60).padStart(2, "0")}s`;
}
function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== text) el.textContent = text;
}
function setLevel(id, level, text, title) {
  const el = $(id);
  el.dataset.level = level;
  if (text !== undefined) el.textContent = text;
  if (title !== undefined) el.title = title;
}

// ------------------------------------------------------------------ token and HTTP
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}
async function getJSON(path) {
  const r = await fetch(API + path, {headers: headers(), cache: "no-store"});
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}
function showToken() {
  setText("token-state", token() ? "token kept for this session" : "no token: commands will be refused");
  $("token-state").dataset.level = token() ? "ok" : "warn";
}

// ------------------------------------------------------------------ live stream
function applyStatus(patch, full) {
  S.status = full ? patch : Object.assign(S.status, patch);
  render();
}

function handleBlock(block) {
  let event = "message", data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join("\n"));
  if (event === "status") applyStatus(payload, true);
  else if (event === "patch") applyStatus(payload, false);
  else if (event === "event") addEvent(payload);
  else if (event === "history") loadHistory(payload);
}

function setConnected(on, why) {
  S.connected = on;
  const el = $("conn");
  el.className = "conn " + (on ? "up" : "down");
  el.textContent = on ? "live" : (why || "reconnecting…");
  document.body.classList.toggle("stale", !on);
}

async function streamLoop() {
  for (;;) {
    const ctrl = new AbortController();
    let watchdog = null;
    const arm = () => { clearTimeout(watchdog); watchdog = setTimeout(() => ctrl.abort(), 25000); };
    try {
      arm();
      const r = await fetch(API + "/stream", {headers: headers(), cache: "no-store", signal: ctrl.signal});
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      setConnected(true);
      loadLayers(true);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        arm();
        buf += dec.decode(value, {stream: true}).replace(/\r\n/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          try { handleBlock(block); } catch (e) { console.error(e); }
        }
      }
    } catch (e) {
      /* daemon down or restarting: try again */
    }
    clearTimeout(watchdog);
    setConnected(false, "reconnecting…");
    await new Promise((res) => setTimeout(res, 1000));
  }
}

async function loadLayers(force) {
  const t = S.status.time_s;
  const day = Number.isFinite(t) ? Math.floor(t / 86400) * 86400 : null;
  if (!force && day === S.day) return;
  S.day = day;
  try {
    const q = day === null ? "" : `?day_start_s=${day}`;
    S.sky = await getJSON("/sky" + q);
    const p = day === null ? "" : `?start_s=${day}&end_s=${day + 86400}`;
    S.plan = await getJSON("/plan" + p);
    setText("site", S.sky.site.name);
    drawSkyBase();
    render();
  } catch (e) {
    S.day = null;   // try again on the next status
  }
}

// ------------------------------------------------------------------ rendering
function render() {
  const st = S.status;
  if (!st || !st.state) return;
  const t = st.time_s;
  if (S.sky === null || (Number.isFinite(t) && Math.floor(t / 86400) * 86400 !== S.day)) loadLayers(false);

  setText("utc", st.time_utc ? st.time_utc.slice(11, 19) : "--:--:--");
  const state = String(st.state).toUpperCase();
  setText("state", state);
  $("tile-state").dataset.state = st.state;
  const taskText = {sun: "following the Sun", sky: "to a sky direction", axes: "to axis positions",
                    jog: "jogging", hold: "holding"}[st.task] || (st.task || "");
  setText("task", taskText + (st.slewing ? " · slewing" : ""));
  setText("mode", st.auto_tracking ? "AUTO" : "MANUAL");
  $("tile-mode").dataset.level = st.auto_tracking ? "ok" : "warn";
  setText("boresight", `boresight ${st.boresight || "—"}`);

  setText("onsun", st.on_sun ? "ON SUN" : "OFF SUN");
  $("tile-sun").dataset.level = st.on_sun ? "ok" : (st.state === "tracking" ? "warn" : "idle");
  const err = st.pointing_error_arcsec;
  const label = st.task === "sun" ? "error to Sun" :
    (st.task === "axes" || st.task === "sky") ? (st.state === "parked" || st.state === "parking" ? "error to park" : "error to target") : "error";
  setText("error-label", label);
  setText("error", (st.task === "jog" || st.task === "hold") ? "—" : fmtArcsec(err));
  $("error").dataset.arcsec = Number.isFinite(err) ? String(err) : "";

  const cw = st.current_window, nw = st.next_window;
  setText("window", cw ? `${hm(cw.start_s)}–${hm(cw.end_s)} UTC` : "no window now");
  const nextText = [];
  if (cw && Number.isFinite(t)) nextText.push(`ends in ${duration(cw.end_s - t)}`);
  if (nw && Number.isFinite(t)) nextText.push(`next ${hm(nw.start_s)} UTC, in ${duration(nw.start_s - t)}`);
  setText("next", nextText.join(" · ") || "no window planned");

  const sun = st.sun || {}, pt = st.pointing || {}, tg = st.target || {};
  setText("sun-az", fmt(sun.azimuth_deg, 3)); setText("sun-el", fmt(sun.elevation_deg, 3));
  setText("pt-az", fmt(pt.az_deg, 3)); setText("pt-el", fmt(pt.el_deg, 3));
  setText("tg-az", fmt(tg.az_deg, 3)); setText("tg-el", fmt(tg.el_deg, 3));
  const ax = st.axes || {};
  setText("ax-az", fmt(ax.azimuth && ax.azimuth.position_deg, 3));
  setText("ax-el", fmt(ax.elevation && ax.elevation.position_deg, 3));
  setText("wind", `${fmt(st.wind_m_s, 1)} m/s`);

  renderBadges(st);
  sample(st);
  drawSkyLive(st);
  const now = performance.now();
  if (now - S.lastCharts > 2000) { S.lastCharts = now; drawCharts(); }
}

function renderBadges(st) {
  const axes = Object.entries(st.axes || {});
  const bad = axes.filter(([, a]) => a.condition !== "ok");
  const stale = axes.filter(([, a]) => !a.fresh || !a.enabled);
  if (!axes.length) setLevel("b-drives", "unknown", "drives ?");
  else if (bad.length) setLevel("b-drives", "bad", `drives ${bad.map(([n, a]) => `${n} ${a.condition}`).join(", ")}`);
  else if (stale.length) setLevel("b-drives", "warn", `drives ${stale.map(([n, a]) => `${n} ${a.fresh ? "disabled" : "stale"}`).join(", ")}`);
  else setLevel("b-drives", "ok", "drives ok");

  const w = st.wind_m_s, sky = S.sky;
  if (!Number.isFinite(w)) setLevel("b-wind", "unknown", "wind ?");
  else if (st.wind_stowed || (sky && w >= sky.wind_stow_m_s)) setLevel("b-wind", "bad", `wind ${w.toFixed(1)} m/s${st.wind_stowed ? " STOWED" : ""}`);
  else if (sky && w >= sky.wind_resume_m_s) setLevel("b-wind", "warn", `wind ${w.toFixed(1)} m/s`);
  else setLevel("b-wind", "ok", `wind ${w.toFixed(1)} m/s`);

  const ages = st.data_ages || {};
  const ut1 = ages.ut1_uncertainty_s;
  const skew = Number.isFinite(st.time_s) ? st.time_s - Date.now() / 1000 : null;
  const clockTitle = `leap-second table expires ${ages.leap_seconds_expire || "?"}; ` +
    `daemon clock - this browser: ${skew === null ? "?" : skew.toFixed(1)} s`;
  if (ages.leap_seconds_expired) setLevel("b-clock", "bad", "clock: leap table expired", clockTitle);
  else if (Number.isFinite(ut1)) setLevel("b-clock", ut1 > 0.1 ? "warn" : "ok", `clock UT1 ±${(ut1 * 1000).toFixed(1)} ms`, clockTitle);
  else setLevel("b-clock", "unknown", "clock ?", clockTitle);

  const left = ages.iers_days_left, age = ages.iers_age_days;
  const iersTitle = `IERS table to ${ages.iers_last_date || "?"}; astropy-iers-data ${ages.astropy_iers_data || "?"}`;
  if (!Number.isFinite(left)) setLevel("b-iers", "unknown", "IERS ?", iersTitle);
  else setLevel("b-iers", left < 0 ? "bad" : left < 30 ? "warn" : "ok",
                `IERS ${Number.isFinite(age) ? age.toFixed(0) + " d old" : ""}, ${left.toFixed(0)} d left`, iersTitle);

  const lg = st.log || {};
  if (lg.healthy === true) setLevel("b-log", "ok", "log ok", lg.path);
  else if (lg.healthy === false) setLevel("b-log", "bad", "log UNHEALTHY", lg.last_error || "");
  else setLevel("b-log", "unknown", "log ?");

  const loop = st.loop || {};
  if (Number.isFinite(loop.jitter_p99_ms)) {
    setLevel("b-loop", loop.jitter_p99_ms > 20 ? "warn" : "ok",
             `loop jitter p99 ${loop.jitter_p99_ms.toFixed(1)} ms`,
             `period p50 ${fmt(loop.period_p50_ms, 1)} ms, p99 ${fmt(loop.period_p99_ms, 1)} ms; ${loop.overruns} overruns, ${loop.errors} errors`);
  } else setLevel("b-loop", "unknown", "loop ?");
  setText("loopinfo", `loop ${fmt(loop.rate_hz, 0)} Hz, ${loop.ticks || 0} ticks, ${loop.overruns || 0} overruns`);

  const faults = st.faults || [];
  setLevel("b-faults", faults.length ? "bad" : (st.fault_pending ? "warn" : "ok"),
           faults.length ? `${faults.length} FAULT${faults.length > 1 ? "S" : ""}` : "no faults");
  const banner = $("fault-banner");
  const keys = faults.map((f) => `${f.source}:${f.condition}:${f.time_s || f.time_utc}`).join("|");
  if (faults.length) {
    banner.hidden = false;
    banner.textContent = faults.map((f) => `FAULT ${f.source}: ${f.condition}` +
      (f.text && f.text !== f.condition ? ` — ${f.text}` : "") + ` (since ${(f.time_utc || "").slice(11, 19)})`)
      .join("   ·   ") + "   → fix the cause, then Reset faults";
    if (keys !== S.faultKeys) { banner.classList.remove("flash"); void banner.offsetWidth; banner.classList.add("flash"); }
  } else banner.hidden = true;
  S.faultKeys = keys;
}

function loadHistory(h) {
  // the daemon's 1 Hz samples of the last hour (kept while a page was open): seed the charts
  const t0 = S.errRing.length ? S.errRing[0][0] : Infinity;
  const err = [], wind = [];
  for (let i = 0; i < h.t_s.length; i++) {
    if (h.t_s[i] >= t0) break;
    err.push([h.t_s[i], h.error_arcsec[i]]);
    wind.push([h.t_s[i], h.wind_m_s[i]]);
  }
  S.errRing = err.concat(S.errRing);
  S.windRing = wind.concat(S.windRing);
  S.lastCharts = 0;
}

function sample(st) {
  const t = st.time_s;
  if (!Number.isFinite(t) || t - S.lastSample < 1) return;
  S.lastSample = t;
  const err = (st.task === "sun" && Number.isFinite(st.pointing_error_arcsec)) ? st.pointing_error_arcsec : null;
  S.errRing.push([t, err]);
  S.windRing.push([t, Number.isFinite(st.wind_m_s) ? st.wind_m_s : null]);
  while (S.errRing.length && S.errRing[0][0] < t - HOUR_S) S.errRing.shift();
  while (S.windRing.length && S.windRing[0][0] < t - HOUR_S) S.windRing.shift();
}

// ------------------------------------------------------------------ SVG helpers
function svgEl(tag, attrs, parent, text) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  if (parent) parent.appendChild(el);
  return el;
}
function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

// Sky chart geometry: x = azimuth 0..360, y = elevation -90..90.
const SKY = {x0: 44, x1: 708, y0: 10, y1: 300};
const skyX = (az) => SKY.x0 + (((az % 360) + 360) % 360) / 360 * (SKY.x1 - SKY.x0);
const skyY = (el) => SKY.y0 + (90 - el) / 180 * (SKY.y1 - SKY.y0);

function inWindow(t) {
  const ws = (S.plan && S.plan.windows) || [];
  return ws.some((w) => t >= w.start_s && t <= w.end_s);
}

function drawSkyBase() {
  const svg = $("sky");
  clear(svg);
  const g = svgEl("g", {class: "grid"}, svg);
  const sky = S.sky;
  if (sky) {
    const env = sky.envelope;
    const y0 = skyY(env.elevation_max_deg), y1 = skyY(env.elevation_min_deg);
    const span = env.azimuth_max_deg - env.azimuth_min_deg;
    const band = (a0, a1) => svgEl("rect", {class: "envelope", x: skyX(a0), y: y0, width: Math.max(0, skyX(a1) - skyX(a0)), height: y1 - y0}, svg);
    if (span >= 360) band(0, 359.999);
    else {
      const a0 = ((env.azimuth_min_deg % 360) + 360) % 360, a1 = a0 + span;
      if (a1 <= 360) band(a0, a1); else { band(a0, 359.999); band(0, a1 - 360); }
    }
    for (const k of env.keep_out || []) {
      svgEl("rect", {class: "keepout", x: skyX(k.azimuth_min_deg), y: skyY(k.elevation_max_deg),
        width: Math.abs(skyX(k.azimuth_max_deg) - skyX(k.azimuth_min_deg)),
        height: skyY(k.elevation_min_deg) - skyY(k.elevation_max_deg)}, svg);
    }
  }
  for (let el = -90; el <= 90; el += 30) {
    svgEl("line", {x1: SKY.x0, x2: SKY.x1, y1: skyY(el), y2: skyY(el), class: el === 0 ? "horizon" : "gl"}, g);
    svgEl("text", {x: SKY.x0 - 6, y: skyY(el) + 4, class: "ax", "text-anchor": "end"}, g, `${el}`);
  }
  const names = {0: "N", 90: "E", 180: "S", 270: "W", 360: "N"};
  for (let az = 0; az <= 360; az += 45) {
    const x = az === 360 ? SKY.x1 : skyX(az);
    svgEl("line", {x1: x, x2: x, y1: SKY.y0, y2: SKY.y1, class: "gl"}, g);
    svgEl("text", {x, y: SKY.y1 + 16, class: "ax", "text-anchor": az === 360 ? "end" : az === 0 ? "start" : "middle"}, g,
          names[az] ? `${names[az]} ${az}` : `${az}`);
  }
  if (sky) {
    const p = sky.sun_path;
    let seg = [], segWin = [];
    const flush = () => {
      if (seg.length > 1) svgEl("polyline", {points: seg.join(" "), class: "sunpath"}, svg);
      if (segWin.length > 1) svgEl("polyline", {points: segWin.join(" "), class: "sunwindow"}, svg);
      seg = []; segWin = [];
    };
    let prevX = null;
    for (let i = 0; i < p.t_s.length; i++) {
      const x = skyX(p.az_deg[i]), y = skyY(p.el_deg[i]);
      if (prevX !== null && Math.abs(x - prevX) > (SKY.x1 - SKY.x0) / 2) flush();
      prevX = x;
      seg.push(`${x.toFixed(1)},${y.toFixed(1)}`);
      if (inWindow(p.t_s[i])) segWin.push(`${x.toFixed(1)},${y.toFixed(1)}`);
      else if (segWin.length) { if (segWin.length > 1) svgEl("polyline", {points: segWin.join(" "), class: "sunwindow"}, svg); segWin = []; }
      const hour = Math.round((p.t_s[i] - sky.day_start_s) / 3600 * 1000) / 1000;
      if (Number.isInteger(hour) && hour % 3 === 0 && hour < 24) {
        svgEl("circle", {cx: x, cy: y, r: 2.5, class: "hourdot"}, svg);
        svgEl("text", {x: x + 5, y: y - 5, class: "hour"}, svg, `${String(hour).padStart(2, "0")}h`);
      }
    }
    flush();
  }
  svgEl("g", {id: "sky-live"}, svg);
}

function drawSkyLive(st) {
  // Persistent markers moved in place (no re-creation at 5 Hz: cheap for the browser).
  const g = $("sky-live");
  if (!g) return;
  if (!g.firstChild) {
    svgEl("path", {id: "m-target", class: "target"}, g);
    svgEl("circle", {id: "m-sunglow", r: 15, class: "sunglow"}, g);
    svgEl("circle", {id: "m-sun", r: 9, class: "sunnow"}, g);
    svgEl("circle", {id: "m-point", r: 13, class: "pointing"}, g);
    svgEl("path", {id: "m-cross", class: "pointing"}, g);
  }
  const sun = st.sun || {}, pt = st.pointing || {}, tg = st.target || {};
  const place = (id, attrs) => {
    const el = $(id);
    for (const [k, v] of Object.entries(attrs)) if (el.getAttribute(k) !== v) el.setAttribute(k, v);
  };
  const ok = (a, b) => Number.isFinite(a) && Number.isFinite(b);
  const r1 = (v) => v.toFixed(1);
  if (ok(tg.az_deg, tg.el_deg)) {
    const x = skyX(tg.az_deg), y = skyY(tg.el_deg);
    place("m-target", {d: `M${r1(x)} ${r1(y - 8)} L${r1(x + 8)} ${r1(y)} L${r1(x)} ${r1(y + 8)} L${r1(x - 8)} ${r1(y)} Z`, visibility: "visible"});
  } else place("m-target", {visibility: "hidden"});
  if (ok(sun.azimuth_deg, sun.elevation_deg)) {
    const c = {cx: r1(skyX(sun.azimuth_deg)), cy: r1(skyY(sun.elevation_deg)), visibility: "visible"};
    place("m-sun", c); place("m-sunglow", c);
  } else { place("m-sun", {visibility: "hidden"}); place("m-sunglow", {visibility: "hidden"}); }
  if (ok(pt.az_deg, pt.el_deg)) {
    const x = skyX(pt.az_deg), y = skyY(pt.el_deg);
    place("m-point", {cx: r1(x), cy: r1(y), visibility: "visible"});
    place("m-cross", {d: `M${r1(x - 20)} ${r1(y)} H${r1(x - 6)} M${r1(x + 6)} ${r1(y)} H${r1(x + 20)} M${r1(x)} ${r1(y - 20)} V${r1(y - 6)} M${r1(x)} ${r1(y + 6)} V${r1(y + 20)}`, visibility: "visible"});
  } else { place("m-point", {visibility: "hidden"}); place("m-cross", {visibility: "hidden"}); }
}

function drawSeries(svgId, ring, opts) {
  const svg = $(svgId);
  clear(svg);
  const W = 600, H = opts.height, X0 = 52, X1 = W - 8, Y0 = 8, Y1 = H - 22;
  const tEnd = ring.length ? ring[ring.length - 1][0] : 0;
  const xOf = (t) => X1 - (tEnd - t) / HOUR_S * (X1 - X0);
  const yOf = (v) => {
    const f = opts.log ? (Math.log10(Math.max(v, opts.min)) - Math.log10(opts.min)) / (Math.log10(opts.max) - Math.log10(opts.min))
      : (v - opts.min) / (opts.max - opts.min);
    return Y1 - Math.min(1, Math.max(0, f)) * (Y1 - Y0);
  };
  for (const v of opts.ticks) {
    svgEl("line", {x1: X0, x2: X1, y1: yOf(v), y2: yOf(v), class: "gl"}, svg);
    svgEl("text", {x: X0 - 6, y: yOf(v) + 4, class: "ax", "text-anchor": "end"}, svg, opts.tickLabel(v));
  }
  for (let m = 0; m <= 60; m += 10) {
    const x = X1 - m / 60 * (X1 - X0);
    svgEl("line", {x1: x, x2: x, y1: Y0, y2: Y1, class: "gl"}, svg);
    svgEl("text", {x, y: H - 6, class: "ax", "text-anchor": "middle"}, svg, m ? `-${m} min` : "now");
  }
  for (const [v, cls] of opts.lines || []) {
    if (Number.isFinite(v)) svgEl("line", {x1: X0, x2: X1, y1: yOf(v), y2: yOf(v), class: cls}, svg);
  }
  const step = Math.max(1, Math.floor(ring.length / (X1 - X0)));   // about one point per pixel
  if (step > 1) {
    const thin = [];
    for (let i = 0; i < ring.length; i += step) {
      const chunk = ring.slice(i, i + step).filter(([, v]) => v !== null);
      thin.push(chunk.length ? [chunk[chunk.length - 1][0], Math.max(...chunk.map(([, v]) => v))] : [ring[i][0], null]);
    }
    ring = thin;
  }
  let pts = [];
  const flush = () => { if (pts.length > 1) svgEl("polyline", {points: pts.join(" "), class: opts.cls}, svg); else if (pts.length === 1) { const [x, y] = pts[0].split(","); svgEl("circle", {cx: x, cy: y, r: 1.5, class: opts.cls + "-dot"}, svg); } pts = []; };
  let prevT = null;
  for (const [t, v] of ring) {
    if (v === null || (prevT !== null && t - prevT > 5 * step)) flush();
    if (v !== null) pts.push(`${xOf(t).toFixed(1)},${yOf(v).toFixed(1)}`);
    prevT = t;
  }
  flush();
}

function drawCharts() {
  const sky = S.sky || {};
  drawSeries("err-chart", S.errRing, {height: 220, log: true, min: 0.1, max: 720000, cls: "errline",
    ticks: [0.1, 1, 10, 60, 600, 3600, 36000, 360000],
    tickLabel: (v) => v >= 3600 ? `${v / 3600}°` : v >= 60 ? `${v / 60}′` : `${v}″`,
    lines: [[sky.on_sun_tolerance_arcsec, "tol"]]});
  const maxW = Math.max(20, (sky.wind_stow_m_s || 15) * 1.25, ...S.windRing.map(([, v]) => v || 0));
  const step = maxW > 40 ? 10 : 5;
  const ticks = [];
  for (let v = 0; v <= maxW; v += step) ticks.push(v);
  drawSeries("wind-chart", S.windRing, {height: 150, log: false, min: 0, max: maxW, cls: "windline",
    ticks, tickLabel: (v) => `${v}`, lines: [[sky.wind_stow_m_s, "stowline"], [sky.wind_resume_m_s, "resumeline"]]});
}

// ------------------------------------------------------------------ events
function cleanMessage(ev) {
  let m = String(ev.message || "");
  m = m.replace(/\b(refused|accepted|ok): \1: /g, "$1: ").replace(/\b(\w+) \1\b/g, "$1");
  const d = ev.data || {};
  if (ev.kind === "command" && d.args && Object.keys(d.args).length) {
    const args = Object.entries(d.args).filter(([, v]) => v !== null && v !== false)
      .map(([k, v]) => `${k}=${typeof v === "number" ? +v.toFixed(4) : v}`).join(" ");
    m = m.replace(new RegExp(`^${d.command} `), `${d.command} ${args} `);
  }
  return m;
}

function addEvent(ev) {
  if (S.events.has(ev.id)) return;
  S.events.set(ev.id, ev);
  const tbody = $("events");
  const tr = document.createElement("tr");
  tr.dataset.id = ev.id;
  tr.dataset.kind = ev.kind;
  const ok = ev.kind === "command" ? (ev.data && ev.data.ok ? "ok" : "refused") : "";
  if (ok) tr.dataset.result = ok;
  for (const [cls, text] of [["t", (ev.time_utc || "").slice(11, 19)], ["k", ev.kind],
                             ["s", ev.source || ""], ["m", cleanMessage(ev)]]) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
  }
  // newest first in time order (a command is logged at once, the state change it causes a
  // tick later with an earlier id: ids alone are not in time order)
  tr.dataset.t = ev.time_s;
  const later = (row) => Number(row.dataset.t) < ev.time_s ||
    (Number(row.dataset.t) === ev.time_s && Number(row.dataset.id) < ev.id);
  let before = null;
  for (const row of tbody.children) { if (later(row)) { before = row; break; } }
  tbody.insertBefore(tr, before);
  while (tbody.children.length > 300) {
    const last = tbody.lastElementChild;
    S.events.delete(Number(last.dataset.id));
    tbody.removeChild(last);
  }
}

// ------------------------------------------------------------------ commands
function say(text, level) {
  const el = $("msg");
  el.textContent = text;
  el.dataset.level = level;
}

function confirmMove(text) {
  const dlg = $("confirm");
  if (typeof dlg.showModal !== "function") return Promise.resolve(window.confirm(text));
  setText("confirm-text", text);
  return new Promise((resolve) => {
    const done = (v) => { $("confirm-yes").onclick = $("confirm-no").onclick = null; dlg.oncancel = null; dlg.close(); resolve(v); };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    dlg.oncancel = (e) => { e.preventDefault(); done(false); };
    dlg.showModal();
    $("confirm-no").focus();
  });
}

async function command(path, body, label) {
  say(`${label}: sending…`, "busy");
  let r;
  try {
    r = await fetch(`${API}/${path}`, {method: "POST", cache: "no-store",
      headers: headers(body === undefined ? {} : {"Content-Type": "application/json"}),
      body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    say(`${label}: the daemon is not reachable (${e.message})`, "bad");
    return;
  }
  let data = {};
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (r.ok) {
    say(`${label}: accepted (state now ${data.state})`, "ok");
    return;
  }
  let detail = data.detail;
  if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  detail = String(detail || r.statusText).replace(/^refused: /, "");
  say(`${label}: refused (${r.status}): ${detail}`, "bad");
}

const SIMPLE = {
  "track-start": {path: "track", body: {on: true}, label: "track start", confirm: "Start automatic Sun tracking? The mount will slew to the Sun."},
  "track-stop": {path: "track", body: {on: false}, label: "track stop"},
  stop: {path: "stop", label: "stop"},
  park: {path: "park", label: "park", confirm: "Move the mount to the park position?"},
  unpark: {path: "unpark", label: "unpark"},
  stow: {path: "stow", label: "stow", confirm: "Move the mount to the stow (survival) position?"},
  reset: {path: "reset", label: "reset"},
};

function wire() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("token").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    showToken();
  });
  $("token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showToken(); });
  for (const btn of document.querySelectorAll("button[data-cmd]")) {
    btn.addEventListener("click", async () => {
      const c = SIMPLE[btn.dataset.cmd];
      if (c.confirm && !(await confirmMove(c.confirm))) { say(`${c.label}: cancelled`, "idle"); return; }
      await command(c.path, c.body, c.label);
    });
  }
  $("goto-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const az = Number($("goto-az").value), el = Number($("goto-el").value), axes = $("goto-axes").checked;
    const what = axes ? "axis positions" : "sky direction";
    if (!(await confirmMove(`Slew to ${what} az ${az} deg, el ${el} deg?`))) { say("goto: cancelled", "idle"); return; }
    await command("goto", {az_deg: az, el_deg: el, axes}, `goto az ${az} el ${el}`);
  });
  $("jog-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const axis = $("jog-axis").value, rate = Number($("jog-rate").value), s = Number($("jog-s").value);
    if (!(await confirmMove(`Jog the ${axis} axis at ${rate} deg/s for ${s} s?`))) { say("jog: cancelled", "idle"); return; }
    await command("jog", {axis, rate_deg_s: rate, seconds: s}, `jog ${axis} ${rate} deg/s ${s} s`);
  });
  showToken();
  getJSON("/info").then((i) => setText("version", `helio-tracker ${i.version} · drives ${i.drives}`)).catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  drawSkyBase();
  drawCharts();
  streamLoop();
});
