// labkit token view (anywidget ES module). Token data arrives as binary buffers:
// ids (Uint32), raw token bytes + offsets, vocabulary pieces + offsets, skipped gaps + offsets.
const PALETTE = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fed7aa", "#a5f3fc", "#f5d0fe"];
const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Lenient = new TextDecoder("utf-8");

function bytesOf(buf) {
  if (!buf) return new Uint8Array(0);
  if (buf instanceof Uint8Array) return buf;
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(0);
}
function u32Of(buf) {
  const b = bytesOf(buf);
  const copy = new Uint8Array(b.length); copy.set(b);   // aligned copy
  return new Uint32Array(copy.buffer, 0, Math.floor(b.length / 4));
}
function slices(buf, offBuf) {
  const data = bytesOf(buf), off = u32Of(offBuf), out = [];
  for (let i = 0; i + 1 < off.length; i++) out.push(data.subarray(off[i], off[i + 1]));
  return out;
}
function hex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, "0").toUpperCase()).join(" "); }
function tokenText(bytes) {
  try { return { text: utf8.decode(bytes), partial: false }; }
  catch (e) { return { text: "<" + hex(bytes) + ">", partial: true }; }
}
// Make whitespace and control characters visible (the toggle).
function visible(text) {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (ch === " ") out += "·";
    else if (ch === "\n") out += "↵\n";
    else if (ch === "\r") out += "␍";
    else if (ch === "\t") out += "→\t";
    else if (c < 0x20) out += String.fromCodePoint(0x2400 + c);
    else if (c === 0x7f) out += "␡";
    else if (c === 0xa0) out += "⍽";
    else if (c === 0x200b || c === 0xfeff) out += "⟦ZW⟧";
    else out += ch;
  }
  return out;
}
// Control characters are shown as symbols even with the toggle off (they would be invisible).
function controlsOnly(text) {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x20 && ch !== "\n" && ch !== "\t" && ch !== "\r") out += String.fromCodePoint(0x2400 + c);
    else if (c === 0x7f) out += "␡";
    else out += ch;
  }
  return out;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "lk-tokens";
  el.appendChild(root);
  const tip = document.createElement("div");
  tip.className = "lk-tip";
  tip.style.display = "none";

  function draw() {
    root.replaceChildren();
    const ws = model.get("show_whitespace");
    const bar = document.createElement("div");
    bar.className = "lk-bar";
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = ws; box.className = "lk-ws-toggle";
    box.addEventListener("change", () => { model.set("show_whitespace", box.checked); model.save_changes(); });
    label.append(box, " show whitespace and control characters");
    bar.appendChild(label);
    root.appendChild(bar);

    const rows = model.get("rows") || [];
    rows.forEach((row, r) => root.appendChild(drawRow(row, r, ws, rows.length > 1)));
    root.appendChild(tip);
  }

  function drawRow(row, r, ws, compare) {
    const wrap = document.createElement("div");
    wrap.className = "lk-row";
    wrap.dataset.tokenizer = row.name;
    const head = document.createElement("div");
    head.className = "lk-head";
    const title = document.createElement("b");
    title.textContent = row.name;
    const stats = document.createElement("span");
    stats.className = "lk-stats";
    stats.textContent = ` ${row.n_tokens.toLocaleString()} tokens · ${row.n_chars.toLocaleString()} characters · ` +
      `${row.n_bytes.toLocaleString()} bytes · ${row.chars_per_token.toFixed(2)} chars/token` +
      (row.vocab_size ? ` · vocabulary ${row.vocab_size.toLocaleString()}` : "");
    head.append(title, stats);
    head.title = row.description || "";
    wrap.appendChild(head);

    const ids = u32Of(row.ids);
    const data = slices(row.data, row.data_off);
    const pieces = slices(row.pieces, row.pieces_off);
    const gaps = slices(row.gaps, row.gaps_off);
    const unknown = bytesOf(row.unknown);
    const body = document.createElement("div");
    body.className = "lk-body" + (compare ? " lk-compare" : "");
    const frag = document.createDocumentFragment();
    for (let i = 0; i < ids.length; i++) {
      const gap = utf8Lenient.decode(gaps[i] || new Uint8Array(0));
      if (gap) {
        const g = document.createElement("span");
        g.className = "lk-gap";
        g.textContent = ws ? visible(gap) : gap;
        frag.appendChild(g);
      }
      const idx = row.start + i;
      const { text, partial } = tokenText(data[i]);
      const unk = unknown[i] === 1;
      const s = document.createElement("span");
      s.className = "lk-tok" + (partial ? " lk-partial" : "") + (unk ? " lk-unk" : "");
      s.style.background = unk ? "#fca5a5" : PALETTE[idx % PALETTE.length];
      const piece = utf8Lenient.decode(pieces[i] || new Uint8Array(0));
      s.textContent = unk ? piece : partial ? text : (ws ? visible(text) : controlsOnly(text));
      if (unk) s.dataset.original = text;
      s.dataset.index = idx;
      s.dataset.id = ids[i];
      s.dataset.bytes = hex(data[i]);
      s.dataset.piece = piece;
      frag.appendChild(s);
    }
    body.appendChild(frag);
    body.addEventListener("mouseover", (ev) => {
      const t = ev.target.closest(".lk-tok");
      if (!t) return;
      tip.replaceChildren();
      const lines = [[`token #${t.dataset.index}`, ""], ["id", t.dataset.id], ["bytes", t.dataset.bytes],
                     ["piece", JSON.stringify(t.dataset.piece)]];
      if (t.dataset.original !== undefined) lines.push(["unknown to this vocabulary", JSON.stringify(t.dataset.original)]);
      for (const [k, v] of lines) {
        const d = document.createElement("div");
        const kk = document.createElement("b"); kk.textContent = k + " ";
        d.append(kk, v);
        tip.appendChild(d);
      }
      tip.style.display = "block";
      const rb = root.getBoundingClientRect(), tb = t.getBoundingClientRect();
      tip.style.left = `${tb.left - rb.left}px`;
      tip.style.top = `${tb.bottom - rb.top + 4}px`;
      t.classList.add("lk-hover");
    });
    body.addEventListener("mouseout", (ev) => {
      const t = ev.target.closest(".lk-tok");
      if (t) t.classList.remove("lk-hover");
      tip.style.display = "none";
    });
    wrap.appendChild(body);

    if (row.n_tokens > row.count) {
      const pager = document.createElement("div");
      pager.className = "lk-pager";
      const win = model.get("window");
      const info = document.createElement("span");
      info.textContent = `tokens ${row.start.toLocaleString()}–${(row.start + row.count - 1).toLocaleString()} ` +
        `of ${row.n_tokens.toLocaleString()}`;
      const go = (start) => {
        const starts = (model.get("starts") || []).slice();
        starts[r] = Math.max(0, Math.min(start, row.n_tokens - 1));
        model.set("starts", starts); model.save_changes();
      };
      const mk = (txt, fn, disabled) => {
        const b = document.createElement("button"); b.textContent = txt; b.disabled = disabled;
        b.addEventListener("click", fn); return b;
      };
      pager.append(mk("⏮ first", () => go(0), row.start === 0),
                   mk("◀ previous", () => go(row.start - win), row.start === 0), info,
                   mk("next ▶", () => go(row.start + win), row.start + row.count >= row.n_tokens),
                   mk("last ⏭", () => go(row.n_tokens - win), row.start + row.count >= row.n_tokens));
      wrap.appendChild(pager);
    }
    for (const note of row.notes || []) {
      const n = document.createElement("div"); n.className = "lk-note"; n.textContent = "note: " + note;
      wrap.appendChild(n);
    }
    return wrap;
  }

  draw();
  model.on("change:rows", draw);
  model.on("change:show_whitespace", draw);
}

export default { render };
