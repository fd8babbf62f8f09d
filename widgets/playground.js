// labkit training playground (anywidget ES module). The kernel trains in a background thread and sends, as
// binary buffers: the training-loss curve (loss_steps, loss: Float32), the held-out loss (test_steps, test_loss),
// the decision boundary (grid: Float32, grid_n x grid_n, P(class 1), row 0 = lowest y) and the training points
// (points: Float32 x,y pairs; labels: Uint8). Train and Stop are messages to the kernel. No external libraries.
function bytes(buf) {
  if (!buf) return new Uint8Array(0);
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(0);
}
function f32(buf) {
  const b = bytes(buf);
  const copy = new Uint8Array(b.length); copy.set(b);  // aligned copy
  return new Float32Array(copy.buffer, 0, Math.floor(b.length / 4));
}
function fmt(v, digits) { return v == null || !isFinite(v) ? "–" : Number(v).toFixed(digits); }
function pct(v) { return v == null || !isFinite(v) ? "–" : (100 * v).toFixed(1) + "%"; }

const LABELS = { dataset: "data", noise: "noise", depth: "layers", width: "width", activation: "activation",
  norm: "norm", dropout: "dropout", optimizer: "optimiser", lr: "learning rate", weight_decay: "weight decay",
  steps: "steps" };
const BLUE = [147, 197, 253], ORANGE = [253, 186, 116];

function setup(canvas, W, H) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = W * dpr; canvas.height = H * dpr;
  canvas.style.width = W + "px"; canvas.style.height = H + "px";
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  return g;
}

function drawBoundary(canvas, model) {
  const W = 300, H = 300, g = setup(canvas, W, H);
  const [x0, x1, y0, y1] = model.get("extent") || [-1, 1, -1, 1];
  const n = model.get("grid_n") || 0, grid = f32(model.get("grid"));
  if (n > 0 && grid.length === n * n) {
    const off = document.createElement("canvas"); off.width = n; off.height = n;
    const og = off.getContext("2d"), img = og.createImageData(n, n);
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < n; c++) {
        const p = grid[(n - 1 - r) * n + c], t = Math.min(1, Math.abs(p - 0.5) * 2), col = p < 0.5 ? BLUE : ORANGE;
        const k = 4 * (r * n + c);
        for (let j = 0; j < 3; j++) img.data[k + j] = Math.round(255 + (col[j] - 255) * (isFinite(t) ? t : 0));
        img.data[k + 3] = 255;
      }
    }
    og.putImageData(img, 0, 0);
    g.imageSmoothingEnabled = true;
    g.drawImage(off, 0, 0, W, H);
  } else {
    g.fillStyle = "#f9fafb"; g.fillRect(0, 0, W, H);
  }
  const pts = f32(model.get("points")), lab = bytes(model.get("labels"));
  for (let i = 0; i < lab.length; i++) {
    const px = ((pts[2 * i] - x0) / (x1 - x0)) * W, py = ((y1 - pts[2 * i + 1]) / (y1 - y0)) * H;
    g.beginPath(); g.arc(px, py, 3, 0, 2 * Math.PI);
    g.fillStyle = lab[i] ? "#c2410c" : "#1d4ed8"; g.fill();
    g.lineWidth = 1; g.strokeStyle = "white"; g.stroke();
  }
  canvas.dataset.points = String(lab.length);
  canvas.dataset.grid = String(n);
}

function drawLoss(canvas, model) {
  const W = 380, H = 300, g = setup(canvas, W, H);
  const L = 46, R = 10, T = 22, B = 28;
  const xs = f32(model.get("loss_steps")), ys = f32(model.get("loss"));
  const txs = f32(model.get("test_steps")), tys = f32(model.get("test_loss"));
  const st = model.get("status") || {};
  g.fillStyle = "#374151"; g.font = "12px system-ui, sans-serif";
  g.fillText("loss (log scale): training ", L, 14);
  const w1 = g.measureText("loss (log scale): training ").width;
  g.fillStyle = "#2563eb"; g.fillText("━", L + w1, 14);
  g.fillStyle = "#374151"; g.fillText(" held-out ", L + w1 + 12, 14);
  g.fillStyle = "#ea580c"; g.fillText("━", L + w1 + 12 + g.measureText(" held-out ").width, 14);
  canvas.dataset.n = String(ys.length);
  canvas.dataset.testN = String(tys.length);
  if (!ys.length) { g.fillStyle = "#9ca3af"; g.fillText("press Train", L + 10, H / 2); return; }
  let lo = Infinity, hi = -Infinity;
  for (const arr of [ys, tys]) for (const v of arr) if (isFinite(v) && v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) { lo = 1e-3; hi = 1; }
  let a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  if (b <= a) b = a + 1;
  const xmax = Math.max(10, xs[xs.length - 1] || 1, txs.length ? txs[txs.length - 1] : 1);  // grows with the run
  const X = (x) => L + (x / xmax) * (W - L - R);
  const Y = (y) => T + (1 - (Math.log10(Math.max(y, 10 ** a)) - a) / (b - a)) * (H - T - B);
  g.font = "10px system-ui, sans-serif"; g.strokeStyle = "#e5e7eb"; g.lineWidth = 1; g.fillStyle = "#6b7280";
  for (let e = a; e <= b; e++) {
    g.beginPath(); g.moveTo(L, Y(10 ** e)); g.lineTo(W - R, Y(10 ** e)); g.stroke();
    g.fillText(e >= 0 ? String(10 ** e) : "1e" + e, 4, Y(10 ** e) + 3);
  }
  g.fillText("0", L - 3, H - B + 14);
  g.fillText(String(xmax), W - R - 6 * String(xmax).length, H - B + 14);
  g.fillText("step", (L + W) / 2 - 10, H - 6);
  for (const [sx, sy, color] of [[xs, ys, "#2563eb"], [txs, tys, "#ea580c"]]) {
    g.strokeStyle = color; g.lineWidth = 1.8; g.beginPath();
    let pen = false;
    for (let i = 0; i < sy.length; i++) {
      if (!isFinite(sy[i])) { pen = false; continue; }
      if (pen) g.lineTo(X(sx[i]), Y(sy[i])); else { g.moveTo(X(sx[i]), Y(sy[i])); pen = true; }
    }
    g.stroke();
  }
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "lk-pg";
  el.appendChild(root);

  const controls = document.createElement("div"); controls.className = "lk-pg-controls";
  const selects = {};
  const choices = model.get("choices") || {};
  for (const key of Object.keys(choices)) {
    const label = document.createElement("label");
    const name = document.createElement("span"); name.textContent = LABELS[key] || key;
    const sel = document.createElement("select"); sel.className = "lk-pg-" + key.replace("_", "-"); sel.dataset.key = key;
    choices[key].forEach((v, i) => {
      const o = document.createElement("option"); o.value = String(i); o.textContent = String(v); sel.appendChild(o);
    });
    sel.addEventListener("change", () => {
      const value = (model.get("choices") || {})[key][Number(sel.value)];
      model.set("settings", { ...(model.get("settings") || {}), [key]: value });
      model.save_changes();
    });
    label.append(name, sel);
    controls.appendChild(label);
    selects[key] = sel;
  }
  const buttons = document.createElement("div"); buttons.className = "lk-pg-buttons";
  const train = document.createElement("button"); train.className = "lk-pg-train"; train.textContent = "▶ Train";
  train.title = "Train a fresh network with these settings (the kernel trains in the background)";
  const stop = document.createElement("button"); stop.className = "lk-pg-stop"; stop.textContent = "■ Stop";
  stop.title = "End the run at the next step";
  train.addEventListener("click", () => {
    // the settings travel with the command: ipywidgets may hold back a state update while the kernel is busy
    // with the previous one, and a custom message would overtake it
    train.disabled = true; model.send({ cmd: "train", settings: model.get("settings") });
  });
  stop.addEventListener("click", () => {
    stop.disabled = true; stop.textContent = "stopping…"; model.send({ cmd: "stop" });
  });
  buttons.append(train, stop);

  const status = document.createElement("div"); status.className = "lk-pg-status";
  const plots = document.createElement("div"); plots.className = "lk-pg-plots";
  const boundary = document.createElement("canvas"); boundary.className = "lk-pg-boundary";
  const loss = document.createElement("canvas"); loss.className = "lk-pg-loss";
  plots.append(boundary, loss);
  const msg = document.createElement("div"); msg.className = "lk-pg-msg";
  root.append(controls, buttons, status, plots, msg);

  function drawControls() {
    const s = model.get("settings") || {}, ch = model.get("choices") || {};
    for (const [key, sel] of Object.entries(selects)) {
      const i = (ch[key] || []).findIndex((v) => v === s[key]);
      if (i >= 0) sel.value = String(i);
    }
  }
  function drawStatus() {
    const st = model.get("status") || {};
    const state = st.state || "ready", running = state === "running" || state === "starting";
    root.dataset.state = state;
    status.replaceChildren();
    const items = [["state", state], ["step", `${st.step ?? 0} / ${st.steps ?? "–"}`], ["loss", fmt(st.loss, 4)],
      ["held-out loss", fmt(st.test_loss, 4)], ["train accuracy", pct(st.train_accuracy)],
      ["held-out accuracy", pct(st.test_accuracy)], ["elapsed", st.elapsed_s != null ? fmt(st.elapsed_s, 1) + " s" : "–"]];
    for (const [k, v] of items) {
      const s = document.createElement("span"); s.dataset.key = k;
      if (k === "state") { s.className = "lk-pg-state " + state; s.textContent = v; }
      else { const b = document.createElement("b"); b.textContent = k; s.append(b, String(v)); }
      status.appendChild(s);
    }
    train.disabled = running;
    stop.disabled = !running;
    if (!running) stop.textContent = "■ Stop";
    for (const sel of Object.values(selects)) sel.disabled = running;
    msg.textContent = st.message || "";
  }
  function drawAll() { drawControls(); drawStatus(); drawBoundary(boundary, model); drawLoss(loss, model); }
  drawAll();
  model.on("change:settings", drawControls);
  model.on("change:status", () => { drawStatus(); drawLoss(loss, model); });
  model.on("change:loss", () => drawLoss(loss, model));
  model.on("change:grid", () => drawBoundary(boundary, model));
  model.on("change:points", () => drawBoundary(boundary, model));
}

export default { render };
