/* VisionOps Console: the little script of every page (no framework, no CDN). Every string that comes from
   the server is put into the page with textContent or as an SVG text node, never as HTML. */
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const MAX_DRAWN = 20;  // boxes drawn on a "try it" image, most confident first
const PALETTE = ["#2563eb", "#e8590c", "#2e9d44", "#9c36b5", "#0891b2", "#d6336c", "#5c7cfa", "#a16207"];

/* ---- helpers ------------------------------------------------------------------------------------------ */

function $(sel, root = document) { return root.querySelector(sel); }
function $$(sel, root = document) { return Array.from(root.querySelectorAll(sel)); }

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "className") node.className = v; else node.setAttribute(k, v === true ? "" : String(v));
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function csrfToken() { const m = $('meta[name="csrf-token"]'); return m ? m.content : ""; }

async function api(method, url, body) {
  const init = { method, headers: { "X-CSRF-Token": csrfToken() }, credentials: "same-origin" };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  let response;
  try { response = await fetch(url, init); } catch (err) { return { ok: false, status: 0, data: { message: "the console does not answer: " + err.message } }; }
  let data = {};
  try { data = await response.json(); } catch (err) { data = { message: `HTTP ${response.status}` }; }
  return { ok: response.ok && data.ok !== false, status: response.status, data };
}

let toastTimer = null;
function toast(message, error = false) {
  const box = $("#toast");
  if (!box) return;
  box.textContent = message;
  box.classList.toggle("error", error);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, error ? 9000 : 6000);
}

function pct(value, digits = 1) {
  return (value === null || value === undefined || !isFinite(value)) ? "–" : (value * 100).toFixed(digits) + " %";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return "–";
  seconds = Math.floor(seconds);
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
  return h ? `${h}h ${mm}m ${ss}s` : `${m}m ${ss}s`;
}

function ago(iso) {
  if (!iso) return "–";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!isFinite(s) || s < 60) return "just now";
  if (s >= 86400) return Math.floor(s / 86400) + " d ago";
  if (s >= 3600) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 60) + " min ago";
}

function readJSON(id) { const node = document.getElementById(id); return node ? JSON.parse(node.textContent) : null; }

function applyVisuals(root = document) {
  $$("[data-colour]", root).forEach((n) => { n.style.background = n.dataset.colour; });
  $$("[data-frac]", root).forEach((n) => { n.style.width = Math.max(0, Math.min(1, Number(n.dataset.frac) || 0)) * 100 + "%"; });
}

/* ---- lightbox ----------------------------------------------------------------------------------------- */

const lightbox = {
  items: [], index: 0,
  open(items, index) {
    this.items = items; this.index = index;
    const box = $("#lightbox");
    box.hidden = false; this.show();
    $(".lb-close", box).focus();
  },
  show() {
    const box = $("#lightbox"), item = this.items[this.index];
    if (!item) return;
    $("img", box).src = item.src; $("img", box).alt = item.caption;
    $("figcaption", box).textContent = `${item.caption}  (${this.index + 1}/${this.items.length})`;
  },
  step(delta) { if (!this.items.length) return; this.index = (this.index + delta + this.items.length) % this.items.length; this.show(); },
  close() { $("#lightbox").hidden = true; },
};

function initLightbox() {
  const box = $("#lightbox");
  if (!box) return;
  $(".lb-close", box).addEventListener("click", () => lightbox.close());
  $(".lb-prev", box).addEventListener("click", () => lightbox.step(-1));
  $(".lb-next", box).addEventListener("click", () => lightbox.step(1));
  box.addEventListener("click", (e) => { if (e.target === box) lightbox.close(); });
  document.addEventListener("keydown", (e) => {
    if (box.hidden) return;
    if (e.key === "Escape") lightbox.close();
    else if (e.key === "ArrowLeft") lightbox.step(-1);
    else if (e.key === "ArrowRight") lightbox.step(1);
  });
  document.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-lightbox]");
    if (!link) return;
    e.preventDefault();
    const group = $$(`a[data-lightbox="${link.dataset.lightbox}"]`).filter((a) => !a.closest("[hidden]"));
    lightbox.open(group.map((a) => ({ src: a.href, caption: a.dataset.caption || "" })), group.indexOf(link));
  });
}

/* ---- line charts -------------------------------------------------------------------------------------- */

function niceMax(v) {
  if (!(v > 0)) return 1;
  const e = Math.pow(10, Math.floor(Math.log10(v)));
  for (const s of [1, 2, 2.5, 5, 10]) if (s * e >= v) return s * e;
  return 10 * e;
}

function lineChart(container, series, { percent = false, epochs = 0 } = {}) {
  container.textContent = "";
  const data = (series || []).filter((s) => s.points && s.points.length);
  if (!data.length) { container.appendChild(el("div", { className: "empty" }, container.dataset.empty || "no data")); return; }
  const W = 560, H = 250, L = 46, R = 14, T = 12, B = 30;
  const xs = data.flatMap((s) => s.points.map((p) => p[0])), ys = data.flatMap((s) => s.points.map((p) => p[1]));
  const xmin = Math.min(...xs, 1), xmax = Math.max(...xs, xmin + 1, epochs || 0);  // planned epochs: room to grow
  const ymax = percent ? Math.min(1, niceMax(Math.max(...ys, 0.1))) : niceMax(Math.max(...ys, 1e-6));
  const tick = (v) => percent ? +(v * 100).toFixed(1) + "%" : +v.toPrecision(3);
  const X = (x) => L + (x - xmin) / (xmax - xmin) * (W - L - R), Y = (y) => T + (1 - y / ymax) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4, y = Y(v);
    root.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: i ? "grid" : "axis" }));
    root.appendChild(svg("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "tick" }, tick(v)));
  }
  const span = xmax - xmin, step = Math.max(1, Math.ceil(span / 8));
  for (let x = Math.ceil(xmin); x <= xmax; x += step) {
    root.appendChild(svg("text", { x: X(x), y: H - B + 14, "text-anchor": "middle", class: "tick" }, x));
  }
  root.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle", class: "tick" }, "epoch"));
  const legend = el("div", { className: "chart-legend" });
  data.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length], dashed = s.name.startsWith("val/");
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(Math.min(p[1], ymax)).toFixed(1)}`).join(" ");
    const path = svg("path", { d, fill: "none", stroke: colour, "stroke-width": 2, "stroke-linejoin": "round" });
    if (dashed) path.setAttribute("stroke-dasharray", "5 4");
    root.appendChild(path);
    if (s.points.length <= 40) {
      for (const p of s.points) {
        const dot = svg("circle", { cx: X(p[0]), cy: Y(Math.min(p[1], ymax)), r: 2.6, fill: colour });
        dot.appendChild(svg("title", {}, `${s.name} · epoch ${p[0]}: ${percent ? pct(p[1]) : p[1].toFixed(4)}`));
        root.appendChild(dot);
      }
    }
    const last = s.points[s.points.length - 1][1];
    const item = el("span");
    const sw = el("span", { className: "swatch" + (dashed ? " dashed" : "") });
    if (dashed) sw.style.borderColor = colour; else sw.style.background = colour;
    item.append(sw, document.createTextNode(`${s.name} ${percent ? pct(last) : last.toFixed(3)}`));
    legend.appendChild(item);
  });
  container.append(root, legend);
}

/* ---- samples (steps 1 and 2) -------------------------------------------------------------------------- */

const samples = {
  seed: null, cls: "",
  init() {
    const grid = $("#samples");
    if (!grid) return;
    this.grid = grid; this.cls = grid.dataset.class || "";
    $("#reshuffle")?.addEventListener("click", () => { this.seed = null; this.load(); });
    $("#sample-split")?.addEventListener("change", () => this.load());
    $("#filter-chip button")?.addEventListener("click", () => this.filter(""));
    this.load();
  },
  filter(cls) {
    this.cls = cls;
    $$("svg.bars .bar").forEach((b) => b.classList.toggle("active", !!cls && b.dataset.class === cls));
    $("svg.bars")?.classList.toggle("filtering", !!cls);
    this.load();
  },
  async load() {
    const grid = this.grid, split = $("#sample-split")?.value || "val";
    const params = new URLSearchParams({ ds: grid.dataset.ds, split, n: grid.dataset.count || "12" });
    if (this.cls) params.set("class", this.cls);
    grid.setAttribute("aria-busy", "true");
    const chip = $("#filter-chip");
    if (chip) { chip.hidden = !this.cls; $(".chip-text", chip).textContent = this.cls; }
    const { ok, data } = await api("GET", "/api/samples?" + params);
    grid.textContent = "";
    grid.removeAttribute("aria-busy");
    if (!ok) { grid.appendChild(el("div", { className: "none" }, data.message || "cannot load samples")); return; }
    const info = $("#sample-info");
    if (info) info.textContent = `${data.items.length} of ${data.candidates} ${data.split} images` + (data.class ? ` holding ${data.class}` : "");
    if (!data.items.length) grid.appendChild(el("div", { className: "none" }, "no image matches"));
    const items = data.items.map((it) => ({ src: it.full, caption: `${it.caption} — ${it.classes.join(", ") || "no defect"}` }));
    data.items.forEach((it, i) => {
      const fig = el("figure", { className: "sample", tabindex: 0, "data-key": it.key, title: it.classes.join(", ") || "no defect" });
      fig.appendChild(el("img", { src: it.tile, alt: it.caption, loading: "lazy", width: 320, height: 320 }));
      fig.appendChild(el("figcaption", {}, `${it.caption} · ${it.boxes} box${it.boxes === 1 ? "" : "es"}`));
      const open = () => lightbox.open(items, i);
      fig.addEventListener("click", open);
      fig.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      grid.appendChild(fig);
    });
    const legend = $("#legend");
    if (legend) {
      legend.textContent = "";
      const shown = [...new Set(data.items.flatMap((it) => it.classes))].sort();
      for (const name of shown) {
        const item = el("span"), sw = el("span", { className: "swatch" });
        sw.style.background = data.colours[name] || "#888";
        item.append(sw, document.createTextNode(name));
        legend.appendChild(item);
      }
    }
  },
};

function initBarFilter(onPick) {
  $$("svg.bars.clickable .bar").forEach((bar) => {
    const pick = () => onPick(bar.classList.contains("active") ? "" : bar.dataset.class);
    bar.addEventListener("click", pick);
    bar.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
  });
}

/* ---- step 3: the form and the runs list --------------------------------------------------------------- */

function initTraining() {
  const form = $("#run-form");
  if (!form) return;
  const chipsBox = $("#product-chips"), byRoot = JSON.parse(chipsBox.dataset.products || "{}");
  const pathInput = $("#f-datasetPath");
  function renderChips() {
    chipsBox.textContent = "";
    const products = byRoot[pathInput.value] || [];
    if (!products.length) chipsBox.appendChild(el("span", { className: "muted" }, "no products found on the volume"));
    for (const p of products) {
      const label = el("label"), box = el("input", { type: "checkbox", name: "products", value: p });
      box.addEventListener("change", () => label.classList.toggle("on", box.checked));
      label.append(box, document.createTextNode(p));
      chipsBox.appendChild(label);
    }
  }
  pathInput.addEventListener("change", renderChips);
  renderChips();

  function clearErrors() {
    $$(".field", form).forEach((f) => { f.classList.remove("invalid"); $(".error", f).textContent = ""; });
    $("#form-error").hidden = true;
  }
  const FIELD_OF = {
    "metadata.name": "name", "metadata.generateName": "name", "spec.dataset.path": "datasetPath", "spec.dataset.pvc": "datasetPath",
    "spec.dataset.products": "products", "spec.model.name": "modelName", "spec.promotion.inferenceService": "inferenceService",
  };
  function fieldFor(path) {
    if (FIELD_OF[path]) return FIELD_OF[path];
    const last = path.split(".").pop();
    return $(`.field[data-field="${last}"]`, form) ? last : null;
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors();
    const body = {};
    for (const input of $$("input[type=text], select", form)) body[input.name] = input.value;
    body.products = $$("input[name=products]:checked", form).map((b) => b.value);
    const button = $("#start-run");
    button.disabled = true; button.classList.add("busy");
    const { ok, data } = await api("POST", "/api/trainingruns", body);
    button.disabled = false; button.classList.remove("busy");
    if (ok) { toast(data.message); window.location.assign(data.url); return; }
    const summary = $("#form-error");
    summary.textContent = "";
    summary.appendChild(el("strong", {}, data.status === 422 ? "The apiserver rejected the TrainingRun:" : "Not created:"));
    summary.appendChild(el("span", { className: "detail" }, data.message || "unknown error"));
    summary.hidden = false;
    for (const [path, messages] of Object.entries(data.fields || {})) {
      const key = fieldFor(path);
      const field = key && $(`.field[data-field="${key}"]`, form);
      if (!field) continue;
      field.classList.add("invalid");
      $(".error", field).textContent = messages.join(" · ");
    }
    const first = $(".field.invalid input, .field.invalid select", form);
    (first || summary).scrollIntoView({ block: "center" });
    if (first) first.focus();
  });
}

function renderRunRows(runs) {
  const body = $("#runs tbody");
  if (!body) return;
  body.textContent = "";
  if (!runs.length) { const tr = el("tr", { className: "empty" }); tr.appendChild(el("td", { colspan: 7 }, "No TrainingRun yet: start one above.")); body.appendChild(tr); return; }
  for (const r of runs) {
    const tr = el("tr", { "data-name": r.name });
    const name = el("td"); name.appendChild(el("a", { href: "/training/" + encodeURIComponent(r.name) }, r.name));
    const phase = el("td"); phase.appendChild(el("span", { className: "badge phase-" + r.phase.toLowerCase() }, r.phase));
    const epoch = el("td"), bar = el("span", { className: "mini-bar" }), fill = el("span", { className: "mini-fill", "data-frac": r.epochs ? r.epoch / r.epochs : 0 });
    bar.appendChild(fill); epoch.append(bar, document.createTextNode(" " + r.display));
    const created = el("td", { title: r.created || "" }, ago(r.created));
    tr.append(name, phase, epoch, el("td", { className: "num" }, pct(r.map50)), el("td", {}, r.version || "–"), el("td", {}, r.promoted || "–"), created);
    body.appendChild(tr);
  }
  applyVisuals(body);
}

function pollRuns() {
  const table = $("#runs");
  if (!table || table.dataset.poll !== "true") return;
  setInterval(async () => {
    if (document.hidden) return;
    const { ok, data } = await api("GET", "/api/trainingruns" + (table.dataset.all === "1" ? "?all=1" : ""));
    if (ok) renderRunRows(data.runs);
  }, 3000);
}

/* ---- a run page: live progress ------------------------------------------------------------------------ */

function renderLive(live) {
  const phase = $("#phase");
  if (phase) { phase.textContent = ""; phase.appendChild(el("span", { className: "badge phase-" + live.phase.toLowerCase() }, live.phase)); }
  $("#epoch-text").textContent = live.display;
  const bar = $("#epoch-bar");
  bar.setAttribute("aria-valuenow", live.epoch); bar.setAttribute("aria-valuemax", live.epochs);
  $(".epoch-fill", bar).dataset.frac = live.epochs ? live.epoch / live.epochs : 0;
  $("#run-id").textContent = live.runId || "–";
  $("#version").textContent = live.version || "–";
  $("#promotion").textContent = (live.promotion && live.promotion.decision) || "–";
  $("#promotion-reason").textContent = (live.promotion && live.promotion.reason) || "";
  const elapsed = $("#elapsed");
  elapsed.dataset.start = live.startTime || ""; elapsed.dataset.end = live.endTime || "";
  for (const [key, value] of Object.entries(live.tiles)) {
    const tile = $("#tile-" + key);
    if (!tile) continue;
    const text = pct(value), node = $(".tile-value", tile);
    if (node.textContent !== text) { node.textContent = text; tile.classList.remove("updated"); void tile.offsetWidth; tile.classList.add("updated"); }
  }
  lineChart($("#chart-loss"), live.series.loss, { epochs: live.epochs });
  lineChart($("#chart-metrics"), live.series.metrics, { percent: true, epochs: live.epochs });
  const events = $("#events tbody");
  events.textContent = "";
  if (!live.events.length) { const tr = el("tr", { className: "empty" }); tr.appendChild(el("td", { colspan: 5 }, "no events yet")); events.appendChild(tr); }
  for (const e of live.events.slice(-60)) {
    const tr = el("tr");
    const type = el("td"); type.appendChild(el("span", { className: "badge " + (e.type === "Warning" ? "bad" : "") }, e.type));
    tr.append(el("td", { title: e.time }, ago(e.time)), type, el("td", {}, e.reason), el("td", {}, e.object), el("td", {}, e.message + (e.count !== "1" ? ` (×${e.count})` : "")));
    events.appendChild(tr);
  }
  const log = $("#log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  log.textContent = live.log || "";
  if (atBottom) log.scrollTop = log.scrollHeight;
  $("#log-note").textContent = live.logNote || "";
  $("#pod-name").textContent = live.pod || "";
  const conds = $("#conditions tbody");
  conds.textContent = "";
  for (const c of live.conditions) {
    const tr = el("tr"), st = el("td");
    st.appendChild(el("span", { className: "badge " + (c.status === "True" ? "good" : c.status === "False" ? "bad" : "") }, c.status));
    tr.append(el("td", {}, c.type), st, el("td", {}, c.reason), el("td", {}, c.message));
    conds.appendChild(tr);
  }
  const message = $("#run-message");
  message.hidden = !live.message;
  $(".detail", message).textContent = live.message || "";
  $("#notes").textContent = (live.notes || []).join(" · ");
  if (live.terminal) { const stop = $("#stop-job"); if (stop) stop.disabled = true; }
  applyVisuals();
}

function tickElapsed() {
  const node = $("#elapsed");
  if (!node || !node.dataset.start) return;
  const start = Date.parse(node.dataset.start), end = node.dataset.end ? Date.parse(node.dataset.end) : Date.now();
  if (isFinite(start)) node.textContent = duration((end - start) / 1000);
}

function initRun() {
  const initial = readJSON("live-data");
  if (!initial) return;
  renderLive(initial);
  const name = initial.name;
  let timer = null;
  async function poll() {
    if (!document.hidden) {
      const { ok, status, data } = await api("GET", `/api/trainingruns/${encodeURIComponent(name)}/live`);
      if (ok) { renderLive(data); if (data.terminal && data.phase !== "Registering" && data.runId && data.tiles.map50 !== null) { /* keep polling slowly */ } }
      else if (status === 404) { toast(data.message, true); clearInterval(timer); return; }
    }
  }
  timer = setInterval(poll, 3000);
  setInterval(tickElapsed, 1000);
  async function act(button, url, body, confirmText) {
    if (confirmText && !window.confirm(confirmText)) return;
    button.disabled = true;
    const { ok, data } = await api("POST", url, body);
    toast(data.message || (ok ? "done" : "failed"), !ok);
    if (!ok) button.disabled = false;
    if (ok && body && body.what === "run") setTimeout(() => window.location.assign("/training"), 1500);
    poll();
  }
  const base = `/api/trainingruns/${encodeURIComponent(name)}`;
  $("#stop-job")?.addEventListener("click", (e) => act(e.currentTarget, base + "/stop", { what: "job" },
    `Stop ${name}? Its Job is deleted (the pod stops); the TrainingRun stays, marked Failed.`));
  $("#delete-run")?.addEventListener("click", (e) => act(e.currentTarget, base + "/stop", { what: "run" },
    `Delete TrainingRun ${name}? Its Job goes with it; MLflow keeps the run.`));
  $("#promote")?.addEventListener("click", (e) => act(e.currentTarget, base + "/promote", {}, null));
}

/* ---- evaluation --------------------------------------------------------------------------------------- */

function initEvaluation() {
  const series = readJSON("series-data");
  if (!series) return;
  lineChart($("#chart-loss"), series.loss);
  lineChart($("#chart-metrics"), series.metrics, { percent: true });
}

/* ---- analysis ----------------------------------------------------------------------------------------- */

function initAnalysis() {
  const grid = $("#hardest");
  const chip = $("#filter-chip");
  function apply(cls) {
    $$("svg.bars .bar").forEach((b) => b.classList.toggle("active", !!cls && b.dataset.class === cls));
    $("svg.bars")?.classList.toggle("filtering", !!cls);
    if (chip) { chip.hidden = !cls; $(".chip-text", chip).textContent = cls; }
    if (!grid) return;
    let shown = 0;
    for (const fig of $$(".hard", grid)) {
      const classes = fig.dataset.classes ? fig.dataset.classes.split(" ") : null;
      const product = cls.split("/")[0];
      const match = !cls || (classes ? classes.includes(cls) : fig.dataset.product === product);
      fig.hidden = !match; shown += match ? 1 : 0;
    }
    $("#hardest-empty").hidden = shown > 0;
  }
  initBarFilter(apply);
  chip?.querySelector("button")?.addEventListener("click", () => apply(""));
}

/* ---- deploy: try it ------------------------------------------------------------------------------------ */

function initDeploy() {
  const form = $("#predict-form");
  if (!form) return;
  const input = $("#predict-file");
  input.addEventListener("change", () => { $(".drop-text", form).textContent = input.files[0] ? input.files[0].name : "Choose an image"; });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = input.files[0];
    if (!file) { toast("Choose an image file first.", true); return; }
    const button = $("#predict-button");
    button.disabled = true; button.classList.add("busy");
    const data = new FormData(); data.append("image", file);
    const model = new URLSearchParams(window.location.search).get("model");
    const result = await api("POST", "/api/predict" + (model ? "?model=" + encodeURIComponent(model) : ""), data);
    button.disabled = false; button.classList.remove("busy");
    const box = $("#predict-result");
    if (!result.ok) { box.hidden = true; toast(result.data.message || "prediction failed", true); return; }
    await drawPrediction(file, result.data);
    box.hidden = false;
  });
}

function confidence(value) { const p = value * 100; return (p >= 10 ? p.toFixed(0) : p.toFixed(1)) + "%"; }

async function drawPrediction(file, data) {
  const url = URL.createObjectURL(file);
  const img = new Image();
  await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
  // fit 640 px: large photos shrink, small ones are enlarged (up to 4x) so that boxes and labels stay readable
  const canvas = $("#predict-canvas"), scale = Math.min(4, 640 / Math.max(img.naturalWidth, img.naturalHeight));
  canvas.width = Math.round(img.naturalWidth * scale); canvas.height = Math.round(img.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  URL.revokeObjectURL(url);
  const all = [...data.detections].sort((a, b) => b.confidence - a.confidence);
  const shown = all.slice(0, MAX_DRAWN);
  const names = [...new Set(shown.map((d) => d.class_name))].sort();
  const colour = (n) => PALETTE[names.indexOf(n) % PALETTE.length];
  ctx.lineWidth = Math.max(2, canvas.width / 240); ctx.font = "bold 12px sans-serif"; ctx.textBaseline = "top";
  const list = $("#detections");
  list.textContent = "";
  for (const d of shown.slice().reverse()) {  // the most confident drawn last, on top
    const [x1, y1, x2, y2] = d.bbox.map((v) => v * scale), c = colour(d.class_name);
    ctx.strokeStyle = c; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${d.class_name} ${confidence(d.confidence)}`, w = ctx.measureText(label).width + 6;
    const ty = y1 >= 16 ? y1 - 16 : y1;
    ctx.fillStyle = c; ctx.fillRect(x1, ty, w, 16); ctx.fillStyle = "#fff"; ctx.fillText(label, x1 + 3, ty + 2);
  }
  for (const d of shown) {
    const li = el("li"), sw = el("span", { className: "swatch" }); sw.style.background = colour(d.class_name);
    li.append(sw, document.createTextNode(`${d.class_name} ${confidence(d.confidence)}`)); list.appendChild(li);
  }
  const n = all.length;
  $("#predict-summary").textContent = `${n} detection${n === 1 ? "" : "s"}` +
    (n > shown.length ? ` (the ${shown.length} most confident drawn)` : "") + ` · ${data.width}×${data.height} px` +
    (data.inference_time_ms ? ` · ${Number(data.inference_time_ms).toFixed(0)} ms in the predictor` : "");
}

/* ---- deploy: production (ModelDeployments) ------------------------------------------------------------ */

function renderDeployment(d) {
  const card = $$(".md-card").find((c) => c.dataset.name === d.name);
  if (!card) return;
  const field = (name) => $(`[data-f="${name}"]`, card);
  const phase = field("phase");
  phase.className = "badge " + d.phaseClass; phase.textContent = d.phaseLabel;
  for (const key of ["version", "serving", "previous"]) field(key).textContent = d[key] || "–";
  field("rollout").textContent = d.rollout;
  field("message").textContent = d.alert.kind ? "" : d.message;
  const alert = $(".md-alert", card);
  alert.className = "banner md-alert " + d.alert.kind;
  alert.setAttribute("role", d.alert.kind === "error" ? "alert" : "status");
  alert.hidden = !d.alert.kind;
  field("alert-title").textContent = d.alert.title; field("alert-text").textContent = d.alert.text;
  field("history-count").textContent = `(${d.history.length})`;
  const body = $(".history tbody", card);
  body.textContent = "";
  if (!d.history.length) { const tr = el("tr", { className: "empty" }); tr.appendChild(el("td", { colspan: 5 }, "nothing was put into production yet")); body.appendChild(tr); }
  for (const h of d.history) {
    const tr = el("tr"), version = el("td"), moved = el("td"), outcome = el("td");
    version.appendChild(el("strong", {}, "v" + h.version));
    moved.appendChild(el("code", {}, h.movedBy));
    if (h.outcome) outcome.appendChild(el("span", { className: "badge " + (h.outcome === "Served" ? "good" : "bad") }, h.outcome));
    tr.append(el("td", {}, h.time), version, moved, el("td", {}, h.cause), outcome);
    body.appendChild(tr);
  }
}

function renderProductionButtons(d) {
  if (!d) return;
  for (const row of $$("#versions tr[data-version]")) {
    const v = row.dataset.version, set = $("form.set-production", row), back = $("form.rollback", row);
    row.classList.toggle("serving", d.serving === v);
    if (!set || !back) continue;
    back.hidden = d.rollbackTo !== v; set.hidden = !back.hidden;
    const button = $("button", set), asked = d.version === v;  // asked for already: where it is, no action
    button.disabled = asked;
    button.textContent = asked ? d.askedLabel : "Set production";
  }
}

function initProduction() {
  $$("form[data-confirm]").forEach((form) => form.addEventListener("submit", (e) => {
    if (!window.confirm(form.dataset.confirm)) { e.preventDefault(); return; }
    $$("form[data-confirm] button").forEach((b) => { b.disabled = true; });  // one request at a time
  }));
  const panel = $("#production");
  if (!panel || panel.dataset.poll !== "true") return;
  // While a version is requested or rolling out, the panel follows the operator's status by itself.
  const timer = setInterval(async () => {
    if (document.hidden) return;
    const { ok, data } = await api("GET", "/api/modeldeployments?model=" + encodeURIComponent(panel.dataset.model));
    if (!ok) return;
    const shown = $$(".md-card", panel).map((c) => c.dataset.name).join(" ");
    if (shown !== data.deployments.map((d) => d.name).join(" ")) { clearInterval(timer); window.location.reload(); return; }
    data.deployments.forEach(renderDeployment);
    renderProductionButtons(data.deployments.find((d) => d.name === data.primary));
    if (!data.deployments.some((d) => d.active)) { clearInterval(timer); panel.dataset.poll = "false"; }
  }, 3000);
}

/* ---- drift -------------------------------------------------------------------------------------------- */

function initDrift() {
  $$(".check-now").forEach((button) => button.addEventListener("click", async () => {
    button.disabled = true;
    const { ok, data } = await api("POST", `/api/driftchecks/${encodeURIComponent(button.dataset.name)}/check`, {});
    toast(data.message || (ok ? "started" : "failed"), !ok);
    if (!ok) button.disabled = false;
  }));
}

/* ---- start ------------------------------------------------------------------------------------------- */

document.addEventListener("DOMContentLoaded", () => {
  applyVisuals();
  initLightbox();
  $$("select[data-autosubmit]").forEach((s) => s.addEventListener("change", () => s.form.submit()));
  const page = document.body.dataset.page;
  if (page === "data") samples.init();
  if (page === "datacard") { samples.init(); initBarFilter((cls) => samples.filter(cls)); }
  if (page === "training") { initTraining(); pollRuns(); initRun(); }
  if (page === "evaluation") initEvaluation();
  if (page === "analysis") initAnalysis();
  if (page === "deploy") { initDeploy(); initProduction(); }
  if (page === "drift") initDrift();
});
