"use strict";
const SVG = "http://www.w3.org/2000/svg";
const cams = new Map();
let interval = 500;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}
function badge(e, text, kind) { e.textContent = text; e.className = "badge " + (kind || ""); }
function fixed(v, n = 1) { return v == null ? "–" : Number(v).toFixed(n); }
function points(ps) { return ps.map(([x, y]) => x + "," + y).join(" "); }

function camera(id) {
  if (cams.has(id)) return cams.get(id);
  const root = el("section", { class: "camera", id: "cam-" + id, "data-camera": id });
  const title = el("h2", {}, id);
  const state = el("span", { class: "badge state" });
  const gating = el("span", { class: "badge gating" });
  title.append(state, gating);
  const stats = el("div", { class: "stats" });
  const picture = el("div", { class: "picture" });
  // Loads at once: the camera's latest picture, or a placeholder before its first frame.
  const img = el("img", { class: "frame", alt: "latest picture of " + id, src: `/ui/cameras/${encodeURIComponent(id)}/frame.jpg` });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 1 1");
  svg.setAttribute("preserveAspectRatio", "none");
  picture.append(img, svg);
  const tracks = el("table", { class: "tracks" });
  tracks.innerHTML = "<thead><tr><th>track</th><th>label</th><th>text</th><th>score</th><th>zone</th><th></th></tr></thead><tbody></tbody>";
  const draw = el("button", { class: "draw" }, "Draw zone");
  const name = el("input", { class: "zone-name", placeholder: "zone name", size: "12" });
  const finish = el("button", { class: "finish", disabled: "" }, "Finish zone");
  const clear = el("button", { class: "clear" }, "Clear zones");
  const yaml = el("pre", { class: "yaml" });
  const problems = el("ul", { class: "problems" });
  root.append(title, stats, picture, el("h3", {}, "Tracks on this frame"), tracks,
    el("div", { class: "editor" }, draw, name, finish, clear), yaml, problems);
  const cameras = document.getElementById("cameras");
  cameras.querySelector(".empty")?.remove();
  cameras.append(root);
  const cam = { id, root, state, gating, stats, picture, img, svg, tracks: tracks.tBodies[0], yaml, problems, name, finish,
    seq: null, zones: [], edited: null, draft: null };
  draw.onclick = () => {
    cam.edited ??= cam.zones.map(z => ({ name: z.name, points: z.points.slice() }));
    cam.draft = [];
    picture.classList.add("drawing");
    finish.disabled = false;
    overlay(cam);
  };
  picture.addEventListener("click", e => {
    if (!cam.draft) return;
    const r = img.getBoundingClientRect();
    if (!r.width || !r.height) return;
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    cam.draft.push([x, y]);
    overlay(cam);
  });
  finish.onclick = () => {
    if (!cam.draft) return;
    const taken = new Set(cam.edited.map(z => z.name));
    let n = cam.edited.length + 1;
    while (taken.has("zone-" + n)) n++;
    cam.edited.push({ name: name.value.trim() || "zone-" + n, points: cam.draft });
    cam.draft = null;
    name.value = "";
    picture.classList.remove("drawing");
    finish.disabled = true;
    overlay(cam);
    checkZones(cam);
  };
  clear.onclick = () => { cam.edited = []; cam.draft = cam.draft && []; overlay(cam); checkZones(cam); };
  cams.set(id, cam);
  return cam;
}

function overlay(cam) {
  cam.svg.replaceChildren();
  const poly = (ps, cls) => {
    const p = document.createElementNS(SVG, "polygon");
    p.setAttribute("points", points(ps));
    p.setAttribute("class", cls);
    cam.svg.append(p);
  };
  for (const z of cam.zones) poly(z.points, "zone");
  for (const z of (cam.edited || []).slice(cam.zones.length)) poly(z.points, "drawn");
  if (cam.draft && cam.draft.length) poly(cam.draft, "draft");
}

async function checkZones(cam) {
  const r = await fetch("/ui/roi", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ zones: cam.edited }) });
  const answer = await r.json();
  if (!r.ok) { cam.problems.replaceChildren(el("li", {}, answer.error || r.statusText)); return; }
  cam.yaml.textContent = answer.yaml;
  cam.problems.replaceChildren(...answer.problems.map(p => el("li", {}, p.path + ": " + p.message)));
}

function cameraState(c, h) {
  if (!h) return ["unknown", ""];
  if (c.catching_up) return ["catching up", "warn"];
  if (h.state === "streaming" || h.state === "running") return c.lag_seconds > 1 ? ["behind", "warn"] : [h.state, "ok"];
  if (h.state === "reconnecting" || h.state === "connecting" || h.state === "restarting") return [h.state, "warn"];
  return [h.state, h.state === "stopped" ? "" : "bad"];
}

function renderCamera(c, health) {
  const cam = camera(c.id);
  const h = (health.cameras || {})[c.id];
  const [state, kind] = cameraState(c, h);
  badge(cam.state, state, kind);
  badge(cam.gating, "gating: " + ((h && h.gating) || "off"), "");
  cam.stats.textContent = `received ${fixed(c.received_fps)} fps · analysed ${fixed(c.analysed_fps)} fps · lag ${fixed(c.lag_seconds, 2)} s` +
    (c.behind_live_seconds != null ? ` · behind live ${fixed(c.behind_live_seconds, 1)} s` : "") +
    (c.frame ? ` · picture ${c.frame.seq} at t=${fixed(c.frame.timestamp, 2)} s${c.frame.analysed ? "" : " (still, not analysed)"}` : "") + (h && h.detail ? ` · ${h.detail}` : "");
  if (JSON.stringify(cam.zones) !== JSON.stringify(c.zones)) { cam.zones = c.zones; overlay(cam); }
  if (c.frame && c.frame.seq !== cam.seq) {
    cam.seq = c.frame.seq;
    cam.img.src = `/ui/cameras/${encodeURIComponent(c.id)}/frame.jpg?seq=${c.frame.seq}`;
  }
  cam.tracks.replaceChildren(...c.tracks.map(t => {
    const row = el("tr", { class: "track" }, el("td", {}, "#" + t.track_id), el("td", {}, t.label), el("td", { class: "text" }, t.text || ""),
      el("td", {}, fixed(t.score, 2)), el("td", {}, t.zone), el("td", {}, t.confirmed ? "confirmed" : "tentative"));
    return row;
  }));
}

function renderHealth(health) {
  badge(document.getElementById("ready"), health.ready ? "ready" : "not ready", health.ready ? "ok" : "bad");
  badge(document.getElementById("live"), health.live ? "live" : "not live", health.live ? "ok" : "bad");
  document.getElementById("stage").textContent = health.status + (health.stage ? " · stage " + health.stage : "");
  document.getElementById("stages").replaceChildren(...(health.stages || []).map(s =>
    el("tr", {}, el("td", {}, s.stage), el("td", {}, s.state), el("td", {}, fixed(s.duration_seconds, 2)))));
  const degraded = Object.entries(health.liveness_failures || {}).concat(Object.entries(health.degraded || {}));
  document.getElementById("degraded").replaceChildren(...(degraded.length ? degraded.map(([k, v]) => el("li", {}, k + ": " + v)) : [el("li", { class: "empty" }, "none")]));
}

async function pollState() {
  try {
    const r = await fetch("/ui/state", { cache: "no-store" });
    const s = await r.json();
    interval = Math.max(250, (s.frame_interval || 0.5) * 1000);
    renderHealth(s.health);
    for (const c of s.cameras) renderCamera(c, s.health);
  } catch (e) { badge(document.getElementById("live"), "unreachable", "bad"); }
  setTimeout(pollState, interval);
}

const shown = new Set();
async function pollEvents() {
  try {
    const list = await (await fetch("/ui/events", { cache: "no-store" })).json();
    const body = document.getElementById("events");
    for (const e of list.slice().reverse()) {
      if (shown.has(e.seq)) continue;
      shown.add(e.seq);
      const ev = e.event;
      const when = ev.emitted_at ? new Date(ev.emitted_at * 1000).toLocaleTimeString() : "";
      const snap = e.has_snapshot ? el("img", { class: "snapshot", alt: "snapshot", src: `/ui/events/${e.seq}/snapshot.jpg` }) : "";
      // A watchlist match is marked: the row stands out and says which list and entry.
      const watch = ev.watchlist ? el("span", { class: "watch" }, ` on ${ev.watchlist.name}: ${ev.watchlist.entry}` +
        (ev.watchlist.distance ? ` (${ev.watchlist.distance} edit${ev.watchlist.distance > 1 ? "s" : ""})` : "")) : "";
      body.prepend(el("tr", { class: ev.watchlist ? "event watched" : "event", "data-type": ev.type }, el("td", {}, when), el("td", {}, ev.camera), el("td", {}, ev.type),
        el("td", {}, (ev.text || ev.label) + " #" + ev.track_id + " in " + ev.zone, watch), el("td", {}, snap)));
      while (body.rows.length > 50) body.deleteRow(body.rows.length - 1);
    }
  } catch (e) { /* the next poll tries again */ }
  setTimeout(pollEvents, 2000);
}

pollState();
pollEvents();
