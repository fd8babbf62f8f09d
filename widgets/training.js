// labkit live training view (anywidget ES module). Curves arrive as Float32 buffers per run:
// steps, loss, reward (NaN where a step has no value). Drawn on canvases, no external libraries.
function f32(buf) {
  if (!buf) return new Float32Array(0);
  let b = buf;
  if (b instanceof ArrayBuffer) b = new Uint8Array(b);
  else if (ArrayBuffer.isView(b)) b = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  else return new Float32Array(0);
  const copy = new Uint8Array(b.length); copy.set(b);  // aligned copy
  return new Float32Array(copy.buffer, 0, Math.floor(b.length / 4));
}
function fmtTime(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
function fmtBytes(n) {
  if (!n) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toPrecision(6));
  return out;
}

function drawPlot(canvas, runs, key, title) {
  const dpr = window.devicePixelRatio || 1, W = 400, H = 230;
  canvas.width = W * dpr; canvas.height = H * dpr;
  canvas.style.width = W + "px"; canvas.style.height = H + "px";
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  const L = 48, R = 10, T = 22, B = 28;
  let xmax = 1, ymin = Infinity, ymax = -Infinity, any = false;
  for (const run of runs) {
    const xs = run._steps, ys = run["_" + key];
    for (let i = 0; i < ys.length; i++) {
      if (!isFinite(ys[i])) continue;
      any = true; xmax = Math.max(xmax, xs[i]); ymin = Math.min(ymin, ys[i]); ymax = Math.max(ymax, ys[i]);
    }
  }
  g.fillStyle = "#374151"; g.font = "12px system-ui, sans-serif";
  g.fillText(title, L, 14);
  if (!any) { g.fillStyle = "#9ca3af"; g.fillText("waiting for the first step…", L + 10, H / 2); return; }
  if (ymax - ymin < 1e-6) { ymin -= 0.5; ymax += 0.5; }
  const pad = (ymax - ymin) * 0.05; ymin -= pad; ymax += pad;
  const X = (x) => L + (x / xmax) * (W - L - R), Y = (y) => T + (1 - (y - ymin) / (ymax - ymin)) * (H - T - B);
  g.strokeStyle = "#e5e7eb"; g.lineWidth = 1; g.fillStyle = "#6b7280"; g.font = "10px system-ui, sans-serif";
  for (const v of niceTicks(ymin, ymax, 5)) {
    g.beginPath(); g.moveTo(L, Y(v)); g.lineTo(W - R, Y(v)); g.stroke();
    g.fillText(String(v), 4, Y(v) + 3);
  }
  for (const v of niceTicks(0, xmax, 6)) {
    g.fillText(String(v), X(v) - 6, H - B + 14);
  }
  g.fillText("step", W - R - 24, H - 4);
  for (const run of runs) {
    const xs = run._steps, ys = run["_" + key];
    g.strokeStyle = run.color; g.globalAlpha = run.current ? 1 : 0.45; g.lineWidth = run.current ? 2 : 1.5;
    g.beginPath(); let pen = false;
    for (let i = 0; i < ys.length; i++) {
      if (!isFinite(ys[i])) { pen = false; continue; }
      if (pen) g.lineTo(X(xs[i]), Y(ys[i])); else { g.moveTo(X(xs[i]), Y(ys[i])); pen = true; }
    }
    g.stroke();
    if (ys.length === 1 && isFinite(ys[0])) { g.fillStyle = run.color; g.fillRect(X(xs[0]) - 2, Y(ys[0]) - 2, 4, 4); }
  }
  g.globalAlpha = 1;
}

// While a cell trains, the kernel does not read widget messages until the cell ends, so the Stop button also
// asks the Jupyter server to interrupt the kernel: labkit turns that interrupt into "stop after this step and
// keep a checkpoint". (When the kernel is idle, e.g. a background run, the stop_requested message does it.)
function interruptKernel(kernelId) {
  if (!kernelId || typeof fetch !== "function") return;
  let baseUrl = "/", token = "";
  try {
    const cfg = JSON.parse(document.getElementById("jupyter-config-data").textContent);
    baseUrl = cfg.baseUrl || "/"; token = cfg.token || "";
  } catch (e) { /* not JupyterLab/Notebook: only the widget message is sent */ }
  const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1];
  const headers = {};
  if (xsrf) headers["X-XSRFToken"] = decodeURIComponent(xsrf);
  if (token) headers["Authorization"] = "token " + token;
  fetch(`${baseUrl.replace(/\/?$/, "/")}api/kernels/${kernelId}/interrupt`, { method: "POST", headers, credentials: "same-origin" })
    .catch(() => {});
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "lk-train";
  el.appendChild(root);
  const head = document.createElement("div"); head.className = "lk-head";
  const state = document.createElement("span"); state.className = "lk-state";
  const stats = document.createElement("div"); stats.className = "lk-stats";
  const stop = document.createElement("button"); stop.className = "lk-stop"; stop.textContent = "■ Stop";
  stop.title = "End the run at the next step and keep a checkpoint";
  stop.addEventListener("click", () => {
    model.set("stop_requested", true); model.save_changes();
    stop.disabled = true; stop.textContent = "stopping…";
    interruptKernel(model.get("kernel_id"));
  });
  head.append(state, stats, stop);
  const plots = document.createElement("div"); plots.className = "lk-plots";
  const lossCanvas = document.createElement("canvas"); lossCanvas.className = "lk-loss";
  const rewardCanvas = document.createElement("canvas"); rewardCanvas.className = "lk-reward";
  plots.append(lossCanvas, rewardCanvas);
  const legend = document.createElement("div"); legend.className = "lk-legend";
  const msg = document.createElement("div"); msg.className = "lk-msg";
  root.append(head, plots, legend, msg);

  function draw() {
    const runs = (model.get("runs") || []).map((r) => ({ ...r, _steps: f32(r.steps), _loss: f32(r.loss), _reward: f32(r.reward) }));
    const st = model.get("status") || {};
    state.textContent = st.state || "ready";
    state.className = "lk-state " + (st.state || "");
    stats.replaceChildren();
    const items = [
      ["run", st.run], ["step", st.max_steps ? `${st.step ?? 0} / ${st.max_steps}` : st.step],
      ["loss", st.loss != null ? Number(st.loss).toFixed(4) : null],
      [st.reward_label || "reward", st.reward != null ? Number(st.reward).toFixed(3) : null],
      ["tokens/s", st.tokens_per_s != null ? Math.round(st.tokens_per_s).toLocaleString() : null],
      ["elapsed", st.elapsed_s != null ? fmtTime(st.elapsed_s) : null],
      ["ETA", st.state === "running" ? fmtTime(st.eta_s) : null],
      ["memory", st.memory ? fmtBytes(st.memory) : null],
    ];
    for (const [k, v] of items) {
      if (v == null || v === "") continue;
      const s = document.createElement("span"); s.dataset.key = k;
      const b = document.createElement("b"); b.textContent = k;
      s.append(b, String(v)); stats.appendChild(s);
    }
    const running = st.state === "running";
    stop.disabled = !running || model.get("stop_requested");
    if (!running) stop.textContent = "■ Stop";
    drawPlot(lossCanvas, runs, "loss", "training loss");
    const withReward = runs.filter((r) => r._reward.some((v) => isFinite(v)));
    rewardCanvas.style.display = withReward.length ? "" : "none";
    if (withReward.length) drawPlot(rewardCanvas, withReward, "reward", (withReward[withReward.length - 1].reward_label || "reward"));
    legend.replaceChildren();
    for (const r of runs) {
      const s = document.createElement("span");
      const sw = document.createElement("span"); sw.className = "sw"; sw.style.background = r.color;
      s.append(sw, `${r.name} (${r.method})${r.current ? "" : " · earlier run"}`);
      legend.appendChild(s);
    }
    msg.textContent = st.message || "";
  }
  draw();
  model.on("change:runs", draw);
  model.on("change:status", draw);
  model.on("change:stop_requested", draw);
}

export default { render };
