// labkit generation view (anywidget ES module). No CDN, no libraries.
// Generated tokens coloured by the probability they were drawn with; click a token for that step's top
// next-token probabilities (the model's, and after temperature / top-k / top-p) and the logit lens.
// The sliders set temperature / top-k / top-p / seed: the kernel generates again and sends the new steps.
function bytesOf(buf) {
  if (!buf) return new Uint8Array(0);
  if (buf instanceof Uint8Array) return buf;
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(0);
}
function aligned(buf) { const b = bytesOf(buf); const c = new Uint8Array(b.length); c.set(b); return c.buffer; }
function u32Of(buf) { const a = aligned(buf); return new Uint32Array(a, 0, Math.floor(a.byteLength / 4)); }
function f32Of(buf) { const a = aligned(buf); return new Float32Array(a, 0, Math.floor(a.byteLength / 4)); }
function strings(buf, offBuf) {
  const data = bytesOf(buf), off = u32Of(offBuf), dec = new TextDecoder("utf-8"), out = [];
  for (let i = 0; i + 1 < off.length; i++) out.push(dec.decode(data.subarray(off[i], off[i + 1])));
  return out;
}
function el_(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
function shown(t) { return JSON.stringify(t).slice(1, -1) || "∅"; }
function pf(p) { return p === 0 ? "0" : p >= 0.01 ? p.toFixed(3) : p.toExponential(1); }

function render({ model, el }) {
  const root = el_("div", "lk-gen");
  el.appendChild(root);
  let selected = 0;

  function slider(label, key, min, max, stepv, fmt) {
    const wrap = el_("label", "lk-gen-slider");
    const input = el_("input"); input.type = "range"; input.min = min; input.max = max; input.step = stepv;
    input.value = model.get(key); input.className = "lk-gen-" + key.replace("_", "-");
    const val = el_("span", "lk-gen-val", fmt(model.get(key)));
    input.addEventListener("input", () => { val.textContent = fmt(+input.value); });
    input.addEventListener("change", () => { model.set(key, +input.value); model.save_changes(); });
    wrap.append(label + " ", input, val);
    return wrap;
  }

  function draw() {
    root.replaceChildren();
    const n = model.get("n_new"), hasSteps = model.get("has_steps");
    const labels = strings(model.get("labels"), model.get("labels_off"));
    const probs = hasSteps ? f32Of(model.get("probs")) : null;
    if (selected >= n) selected = 0;

    if (hasSteps && model.get("beams") === 1) {
      const bar = el_("div", "lk-gen-bar");
      bar.append(
        slider("temperature", "temperature", 0, 2, 0.05, (v) => (v === 0 ? "0 (greedy)" : v.toFixed(2))),
        slider("top-k", "top_k", 0, 50, 1, (v) => (v === 0 ? "off" : String(v))),
        slider("top-p", "top_p", 0.05, 1, 0.05, (v) => (v >= 1 ? "off" : v.toFixed(2))),
      );
      const seed = el_("label", "lk-gen-slider");
      const si = el_("input"); si.type = "number"; si.value = model.get("seed"); si.className = "lk-gen-seed"; si.style.width = "5em";
      si.addEventListener("change", () => { model.set("seed", Math.trunc(+si.value) || 0); model.save_changes(); });
      seed.append("seed ", si);
      bar.appendChild(seed);
      if (model.get("busy")) bar.appendChild(el_("span", "lk-gen-busy", "re-sampling…"));
      root.appendChild(bar);
    }
    if (model.get("error")) root.appendChild(el_("div", "lk-gen-error", model.get("error")));

    const text = el_("div", "lk-gen-text");
    text.appendChild(el_("span", "lk-gen-prompt", model.get("prompt")));
    for (let i = 0; i < n; i++) {
      const t = el_("span", "lk-gen-tok" + (hasSteps && i === selected ? " lk-sel" : ""), labels[i]);
      t.dataset.step = i;
      if (probs) {
        // low-probability choices stand out: that is where sampling took a risk
        t.style.background = `rgba(234,88,12,${(0.08 + 0.7 * (1 - probs[i])).toFixed(3)})`;
        t.title = `step ${i}: p=${probs[i].toFixed(3)} — click for the distribution`;
        t.addEventListener("click", () => { selected = i; draw(); });
      }
      text.appendChild(t);
    }
    root.appendChild(text);
    root.appendChild(el_("div", "lk-gen-summary", model.get("summary")));
    const kv = model.get("kv");
    if (kv && kv.tokens) {
      const k = el_("div", "lk-gen-kv");
      const rate = (s) => (kv.tokens / Math.max(s, 1e-9)).toFixed(0);
      k.append(el_("b", null, "KV cache: "),
        `with ${kv.with.toFixed(3)} s (${rate(kv.with)} tok/s) · without ${kv.without.toFixed(3)} s (${rate(kv.without)} tok/s) · ` +
        `${(kv.without / Math.max(kv.with, 1e-9)).toFixed(1)}× faster with the cache`);
      root.appendChild(k);
    }
    for (const note of model.get("notes") || []) root.appendChild(el_("div", "lk-gen-note", "note: " + note));
    if (hasSteps && n > 0) root.appendChild(stepPanel(selected, labels));
  }

  function stepPanel(s, labels) {
    const N = model.get("top_n");
    const tl = strings(model.get("top_labels"), model.get("top_labels_off"));
    const raw = f32Of(model.get("top_raw")), proc = f32Of(model.get("top_probs"));
    const ranks = u32Of(model.get("ranks")), chosenP = f32Of(model.get("probs")), chosenRaw = f32Of(model.get("raw"));
    const panel = el_("div", "lk-gen-panel");
    const left = el_("div", "lk-gen-dist");
    left.appendChild(el_("div", "lk-gen-h",
      `step ${s}: chose ${JSON.stringify(labels[s])} — rank ${ranks[s]} in the model's distribution, ` +
      `p=${pf(chosenRaw[s])} (model) / ${pf(chosenP[s])} (with these settings)`));
    let peak = 1e-9;
    for (let j = 0; j < N; j++) peak = Math.max(peak, raw[s * N + j], proc[s * N + j]);
    for (let j = 0; j < N; j++) {
      const r = raw[s * N + j], p = proc[s * N + j];
      const row = el_("div", "lk-gen-row" + (tl[s * N + j] === labels[s] && j === ranks[s] ? " lk-chosen" : "") + (p === 0 ? " lk-cut" : ""));
      row.dataset.rank = j;
      const name = el_("span", "lk-gen-name", shown(tl[s * N + j]));
      const bars = el_("span", "lk-gen-bars");
      const b1 = el_("span", "lk-gen-raw"); b1.style.width = `${(100 * r / peak).toFixed(1)}%`;
      const b2 = el_("span", "lk-gen-proc"); b2.style.width = `${(100 * p / peak).toFixed(1)}%`;
      bars.append(b1, b2);
      const num = el_("span", "lk-gen-num", `${pf(r)} → ${p === 0 ? "cut" : pf(p)}`);
      row.append(name, bars, num);
      left.appendChild(row);
    }
    left.appendChild(el_("div", "lk-gen-legend", "grey: the model's probability · orange: after temperature, top-k and top-p (what was sampled from)"));
    panel.appendChild(left);
    const names = model.get("lens_names") || [];
    if (names.length) {
      const K = model.get("lens_k"), ll = strings(model.get("lens_labels"), model.get("lens_labels_off"));
      const lp = f32Of(model.get("lens_probs")), R = names.length;
      const lens = el_("div", "lk-gen-lens");
      lens.appendChild(el_("div", "lk-gen-h", "logit lens: what each layer would predict here"));
      const table = el_("table");
      for (let r = R - 1; r >= 0; r--) {
        const tr = el_("tr");
        tr.appendChild(el_("td", "lk-gen-layer", names[r]));
        for (let k = 0; k < K; k++) {
          const idx = (s * R + r) * K + k;
          const td = el_("td", "lk-gen-lenscell", `${shown(ll[idx])} ${pf(lp[idx])}`);
          td.style.background = `rgba(22,163,74,${Math.min(1, lp[idx]).toFixed(3)})`;
          tr.appendChild(td);
        }
        table.appendChild(tr);
      }
      lens.appendChild(table);
      panel.appendChild(lens);
    }
    return panel;
  }

  model.on("change:version", draw);
  model.on("change:busy", draw);
  model.on("change:error", draw);
  draw();
}

export default { render };
