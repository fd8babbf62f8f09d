// labkit attention view (anywidget ES module). No CDN, no libraries.
// Data: token labels (UTF-8 + Uint32 offsets), attention as float16 buffers (every layer, or one layer that the
// kernel sends when `layer` changes), model-view thumbnails as uint8 images.
const HEAD_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4f46e5", "#65a30d", "#0d9488", "#b91c1c", "#7c3aed", "#c2410c", "#0369a1", "#a16207"];
const ROW = 18;        // px per token row in the head view
const MIN_W = 0.02;    // lines lighter than this are not drawn (rows sum to 1: at most 50 per row)

function bytesOf(buf) {
  if (!buf) return new Uint8Array(0);
  if (buf instanceof Uint8Array) return buf;
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(0);
}
function aligned(buf) { const b = bytesOf(buf); const c = new Uint8Array(b.length); c.set(b); return c.buffer; }
function u32Of(buf) { const a = aligned(buf); return new Uint32Array(a, 0, Math.floor(a.byteLength / 4)); }
// float16 -> float32 through a 65536-entry table (Float16Array is not in every browser yet)
let HALF = null;
function halfTable() {
  if (HALF) return HALF;
  HALF = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    HALF[h] = e === 0 ? s * Math.pow(2, -14) * (f / 1024)
      : e === 31 ? (f ? NaN : s * Infinity) : s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  return HALF;
}
function f16(buf) {
  const t = halfTable(), a = aligned(buf), u = new Uint16Array(a, 0, Math.floor(a.byteLength / 2));
  const out = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) out[i] = t[u[i]];
  return out;
}
function labels(buf, offBuf) {
  const data = bytesOf(buf), off = u32Of(offBuf), dec = new TextDecoder("utf-8"), out = [];
  for (let i = 0; i + 1 < off.length; i++) out.push(dec.decode(data.subarray(off[i], off[i + 1])));
  return out;
}
function shown(t) { return t.replace(/\n/g, "↵").replace(/\t/g, "→").replace(/^ /, "·").replace(/ $/, "·") || "∅"; }
function el_(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
function hexRGB(c) { return [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)]; }

function render({ model, el }) {
  const root = el_("div", "lk-attn");
  el.appendChild(root);
  const cache = new Map();  // layer -> Float32Array (H * n * n)
  let toks = labels(model.get("tokens"), model.get("tokens_off"));
  const tip = el_("div", "lk-attn-tip"); tip.style.display = "none";

  function ingest() {
    const data = model.get("data"), dl = model.get("data_layer");
    const H = model.get("n_heads"), n = model.get("n_tokens"), per = H * n * n;
    if (!data || bytesOf(data).length === 0) return;
    const all = f16(data);
    if (model.get("all_layers")) {
      for (let L = 0; L < model.get("n_layers"); L++) cache.set(L, all.subarray(L * per, (L + 1) * per));
    } else if (dl >= 0) cache.set(dl, all);
  }
  function layerData(L) {
    if (cache.has(L)) return cache.get(L);
    if (model.get("layer") !== L) { model.set("layer", L); model.save_changes(); }
    return null;
  }
  // weight of query i -> key j for head h (h = -1: mean of the heads)
  function weightFn(A, H, n, h) {
    if (h >= 0) return (i, j) => A[h * n * n + i * n + j];
    return (i, j) => { let s = 0; for (let k = 0; k < H; k++) s += A[k * n * n + i * n + j]; return s / H; };
  }

  function toolbar() {
    const bar = el_("div", "lk-attn-bar");
    for (const v of ["head", "model", "matrix"]) {
      const b = el_("button", "lk-attn-tab" + (model.get("view") === v ? " lk-on" : ""), v + " view");
      b.dataset.view = v;
      b.addEventListener("click", () => { model.set("view", v); model.save_changes(); });
      bar.appendChild(b);
    }
    if (model.get("view") !== "model") {
      const ls = el_("select", "lk-attn-layer");
      for (let L = 0; L < model.get("n_layers"); L++) { const o = el_("option", null, `layer ${L}`); o.value = L; ls.appendChild(o); }
      ls.value = model.get("layer");
      ls.addEventListener("change", () => { model.set("layer", +ls.value); model.save_changes(); });
      const hs = el_("select", "lk-attn-head");
      const all = el_("option", null, "all heads"); all.value = -1; hs.appendChild(all);
      for (let h = 0; h < model.get("n_heads"); h++) { const o = el_("option", null, `head ${h}`); o.value = h; hs.appendChild(o); }
      hs.value = model.get("head");
      hs.addEventListener("change", () => { model.set("head", +hs.value); model.save_changes(); });
      bar.append(ls, hs);
    }
    const info = el_("span", "lk-attn-info",
      `${model.get("model_name")} · ${model.get("n_tokens")} tokens · ${model.get("n_layers")} layers × ${model.get("n_heads")} heads` +
      (model.get("causal") ? " · causal (a token sees only earlier tokens)" : ""));
    bar.appendChild(info);
    return bar;
  }

  function draw() {
    root.replaceChildren();
    root.appendChild(toolbar());
    for (const note of model.get("notes") || []) root.appendChild(el_("div", "lk-attn-note", "note: " + note));
    const body = el_("div", "lk-attn-body");
    root.appendChild(body);
    root.appendChild(tip);
    const view = model.get("view");
    if (view === "model") return drawModel(body);
    const A = layerData(model.get("layer"));
    if (!A) { body.appendChild(el_("div", "lk-attn-loading", `loading layer ${model.get("layer")}…`)); return; }
    if (view === "matrix") drawMatrix(body, A); else drawHead(body, A);
  }

  // ---------------------------------------------------------------------------------------------- head view
  function drawHead(body, A) {
    const n = model.get("n_tokens"), H = model.get("n_heads"), h = model.get("head"), ps = model.get("pair_start");
    let filter = "all";
    const wrap = el_("div", "lk-attn-head-view");
    if (ps >= 0) {
      const sel = el_("select", "lk-attn-pair");
      for (const [v, t] of [["all", "all pairs"], ["AA", "sentence A → A"], ["AB", "A → B"], ["BA", "B → A"], ["BB", "B → B"]]) {
        const o = el_("option", null, t); o.value = v; sel.appendChild(o);
      }
      sel.addEventListener("change", () => { filter = sel.value; paint(-1, -1); });
      body.appendChild(sel);
    }
    const inRange = (i, side) => {
      if (filter === "all") return true;
      const isA = i < ps, want = side === "q" ? filter[0] : filter[1];
      return want === "A" ? isA : !isA;
    };
    const left = el_("div", "lk-attn-col lk-left"), right = el_("div", "lk-attn-col lk-right");
    const canvas = el_("canvas", "lk-attn-lines");
    const W = 180, Hpx = n * ROW, dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = Hpx * dpr; canvas.style.width = W + "px"; canvas.style.height = Hpx + "px";
    const ctx = canvas.getContext("2d"); ctx.scale(dpr, dpr);
    const L = [], R = [];
    for (let i = 0; i < n; i++) {
      const a = el_("div", "lk-tok-q", shown(toks[i])); a.dataset.index = i; a.title = `#${i} ${JSON.stringify(toks[i])}`;
      const b = el_("div", "lk-tok-k", shown(toks[i])); b.dataset.index = i; b.title = a.title;
      L.push(a); R.push(b); left.appendChild(a); right.appendChild(b);
    }
    const heads = h >= 0 ? [h] : [...Array(H).keys()];
    const wf = weightFn(A, H, n, h);
    function paint(qi, kj) {
      ctx.clearRect(0, 0, W, Hpx);
      ctx.lineWidth = 1.5;
      for (const hh of heads) {
        const [r, g, b] = hexRGB(HEAD_COLORS[hh % HEAD_COLORS.length]);
        const base = hh * n * n;
        for (let i = 0; i < n; i++) {
          if (qi >= 0 && i !== qi) continue;
          if (!inRange(i, "q")) continue;
          for (let j = 0; j < n; j++) {
            if (kj >= 0 && j !== kj) continue;
            if (!inRange(j, "k")) continue;
            const w = A[base + i * n + j];
            if (w < MIN_W) continue;
            ctx.strokeStyle = `rgba(${r},${g},${b},${Math.min(1, w * (heads.length > 1 ? 0.9 : 1))})`;
            ctx.beginPath(); ctx.moveTo(0, i * ROW + ROW / 2); ctx.lineTo(W, j * ROW + ROW / 2); ctx.stroke();
          }
        }
      }
      for (let i = 0; i < n; i++) {
        L[i].classList.toggle("lk-active", i === qi);
        R[i].classList.toggle("lk-active", i === kj);
        // with one token isolated, the other side shows its weights as a background
        const w = qi >= 0 ? wf(qi, i) : kj >= 0 ? wf(i, kj) : 0;
        const tgt = qi >= 0 ? R[i] : kj >= 0 ? L[i] : null;
        R[i].style.background = ""; L[i].style.background = "";
        R[i].dataset.weight = ""; L[i].dataset.weight = "";
        if (tgt) { tgt.style.background = `rgba(37,99,235,${Math.min(1, w).toFixed(3)})`; tgt.dataset.weight = w.toFixed(4); }
      }
      wrap.classList.toggle("lk-isolated", qi >= 0 || kj >= 0);
    }
    left.addEventListener("mouseover", (ev) => { const t = ev.target.closest(".lk-tok-q"); if (t) paint(+t.dataset.index, -1); });
    right.addEventListener("mouseover", (ev) => { const t = ev.target.closest(".lk-tok-k"); if (t) paint(-1, +t.dataset.index); });
    wrap.addEventListener("mouseleave", () => paint(-1, -1));
    wrap.append(left, canvas, right);
    const legend = el_("div", "lk-attn-legend", "hover a token on the left to see what it attends to; on the right, what attends to it");
    body.append(legend, wrap);
    paint(-1, -1);
  }

  // ---------------------------------------------------------------------------------------------- model view
  function drawModel(body) {
    const Ln = model.get("n_layers"), H = model.get("n_heads"), s = model.get("thumb");
    const th = bytesOf(model.get("thumbs"));
    const grid = el_("div", "lk-attn-grid");
    grid.style.gridTemplateColumns = `auto repeat(${H}, auto)`;
    grid.appendChild(el_("div", "lk-attn-corner", ""));
    for (let h = 0; h < H; h++) grid.appendChild(el_("div", "lk-attn-colhead", `H${h}`));
    const img = new ImageData(s, s);
    for (let L = 0; L < Ln; L++) {
      grid.appendChild(el_("div", "lk-attn-rowhead", `L${L}`));
      for (let h = 0; h < H; h++) {
        const c = el_("canvas", "lk-attn-thumb"); c.width = s; c.height = s;
        c.dataset.layer = L; c.dataset.head = h; c.title = `layer ${L}, head ${h}: click to open`;
        const base = (L * H + h) * s * s;
        for (let p = 0; p < s * s; p++) {
          const v = th[base + p];
          img.data[4 * p] = 255 - Math.round(v * 0.85); img.data[4 * p + 1] = 255 - Math.round(v * 0.6);
          img.data[4 * p + 2] = 255 - Math.round(v * 0.08); img.data[4 * p + 3] = 255;
        }
        c.getContext("2d").putImageData(img, 0, 0);
        c.addEventListener("click", () => {
          model.set("layer", L); model.set("head", h); model.set("view", "head"); model.save_changes();
        });
        grid.appendChild(c);
      }
    }
    body.append(el_("div", "lk-attn-legend", "every layer (rows) × head (columns); darker = more attention. Click a head to open it."), grid);
  }

  // ---------------------------------------------------------------------------------------------- matrix view
  function drawMatrix(body, A) {
    const n = model.get("n_tokens"), H = model.get("n_heads"), h = model.get("head"), causal = model.get("causal");
    const wf = weightFn(A, H, n, h);
    const cell = Math.max(1, Math.min(16, Math.floor(640 / n)));
    const withLabels = cell >= 10;
    const pad = withLabels ? 90 : 4, size = n * cell, dpr = window.devicePixelRatio || 1;
    const canvas = el_("canvas", "lk-attn-matrix");
    canvas.width = (size + pad) * dpr; canvas.height = (size + pad) * dpr;
    canvas.style.width = size + pad + "px"; canvas.style.height = size + pad + "px";
    const ctx = canvas.getContext("2d"); ctx.scale(dpr, dpr);
    let peak = 0;
    const W = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { const w = wf(i, j); W[i * n + j] = w; if (w > peak) peak = w; }
    peak = peak || 1;
    // one pixel per cell in an offscreen image, scaled up without smoothing: fast even at 512 × 512
    const img = new ImageData(n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      const p = 4 * (i * n + j);
      if (causal && j > i) { img.data[p] = 229; img.data[p + 1] = 231; img.data[p + 2] = 235; }  // masked future
      else {
        const a = W[i * n + j] / peak;  // blend #2563eb over white
        img.data[p] = Math.round(255 - a * (255 - 37)); img.data[p + 1] = Math.round(255 - a * (255 - 99));
        img.data[p + 2] = Math.round(255 - a * (255 - 235));
      }
      img.data[p + 3] = 255;
    }
    const off = document.createElement("canvas"); off.width = n; off.height = n;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, pad, pad, size, size);
    if (causal && cell >= 4) {  // hatch the mask so it reads as "not allowed", not "weight 0"
      ctx.strokeStyle = "#cbd5e1"; ctx.lineWidth = 1;
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
        ctx.beginPath(); ctx.moveTo(pad + j * cell, pad + (i + 1) * cell); ctx.lineTo(pad + (j + 1) * cell, pad + i * cell); ctx.stroke();
      }
    }
    if (withLabels) {
      ctx.fillStyle = "#111"; ctx.font = `${Math.min(12, cell - 1)}px monospace`; ctx.textBaseline = "middle";
      for (let i = 0; i < n; i++) {
        ctx.textAlign = "right"; ctx.fillText(shown(toks[i]).slice(0, 11), pad - 4, pad + i * cell + cell / 2);
        ctx.save(); ctx.translate(pad + i * cell + cell / 2, pad - 4); ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left"; ctx.fillText(shown(toks[i]).slice(0, 11), 0, 0); ctx.restore();
      }
    }
    canvas.addEventListener("mousemove", (ev) => {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor((ev.clientX - r.left - pad) / cell), i = Math.floor((ev.clientY - r.top - pad) / cell);
      if (i < 0 || j < 0 || i >= n || j >= n) { tip.style.display = "none"; return; }
      const masked = causal && j > i;
      tip.textContent = `${JSON.stringify(toks[i])} (#${i}) → ${JSON.stringify(toks[j])} (#${j}): ` +
        (masked ? "masked (future token)" : W[i * n + j].toFixed(4));
      const rb = root.getBoundingClientRect();
      tip.style.left = `${ev.clientX - rb.left + 12}px`; tip.style.top = `${ev.clientY - rb.top + 12}px`;
      tip.style.display = "block";
    });
    canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    body.append(el_("div", "lk-attn-legend", "rows: the token that looks (query) · columns: the token looked at (key)" +
      (causal ? " · grey: masked future" : "")), canvas);
  }

  ingest();
  model.on("change:data", () => { ingest(); draw(); });
  model.on("change:view", draw);
  model.on("change:layer", draw);
  model.on("change:head", draw);
  model.on("change:tokens", () => { toks = labels(model.get("tokens"), model.get("tokens_off")); cache.clear(); ingest(); draw(); });
  draw();
}

export default { render };
