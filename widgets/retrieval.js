// Retrieval explorer: question, answer with citations, and the chunks each retriever returned, side by side.
const dec = new TextDecoder();

function view(buf) {
  if (!buf) return new DataView(new ArrayBuffer(0));
  if (buf instanceof DataView) return buf;
  if (buf.buffer) return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return new DataView(buf);
}
function u32s(buf) {
  const v = view(buf), out = [];
  for (let i = 0; i + 4 <= v.byteLength; i += 4) out.push(v.getUint32(i, true));
  return out;
}
function f32s(buf) {
  const v = view(buf), out = [];
  for (let i = 0; i + 4 <= v.byteLength; i += 4) out.push(v.getFloat32(i, true));
  return out;
}
function strings(buf, offBuf) {
  const v = view(buf), off = u32s(offBuf), out = [];
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  for (let i = 0; i + 1 < off.length; i++) out.push(dec.decode(bytes.subarray(off[i], off[i + 1])));
  return out;
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function highlighted(text, terms) {
  const frag = document.createDocumentFragment();
  const re = /[A-Za-z0-9]+/g;
  let pos = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (terms.has(m[0].toLowerCase())) {
      frag.appendChild(document.createTextNode(text.slice(pos, m.index)));
      frag.appendChild(el("mark", "", m[0]));
      pos = m.index + m[0].length;
    }
  }
  frag.appendChild(document.createTextNode(text.slice(pos)));
  return frag;
}

function renderItem(item, maxChars, root) {
  const box = el("div", "labkit-rag-item");
  box.appendChild(el("div", "labkit-rag-q", "Q: " + item.question));
  if (item.rewritten) box.appendChild(el("div", "labkit-rag-rewritten", "searched as: " + item.rewritten));
  const a = el("div", "labkit-rag-a");
  a.appendChild(document.createTextNode("A: " + (item.answer || "(no answer)")));
  const cites = new Set(item.citations || []);
  for (const c of item.citations || []) {
    const chip = el("span", "labkit-rag-cite", c);
    chip.title = "cited chunk: hover to find it in the columns";
    chip.addEventListener("mouseenter", () => mark(c, true));
    chip.addEventListener("mouseleave", () => mark(c, false));
    a.appendChild(chip);
  }
  if (!cites.size) a.appendChild(el("span", "labkit-rag-cite", "no citation"));
  a.appendChild(el("span", "labkit-rag-method", item.method));
  if (item.score !== null && item.score !== undefined) {
    a.appendChild(el("span", "labkit-rag-method", "span score over no-answer " + Number(item.score).toFixed(2)));
  }
  if (item.faithful === true) a.appendChild(el("span", "labkit-rag-faithful ok", "✓ found in the cited chunk"));
  if (item.faithful === false) {
    a.appendChild(el("span", "labkit-rag-faithful bad", "✗ not faithful" + (item.said ? ": the model said “" + item.said + "”, in no chunk" : "")));
    a.classList.add("unfaithful");
  }
  box.appendChild(a);
  if (item.evidence) box.appendChild(el("div", "labkit-rag-rewritten", "from the sentence: " + item.evidence));
  for (const n of item.notices || []) box.appendChild(el("div", "labkit-rag-notice", "notice: " + n));
  const terms = new Set(item.terms || []);
  const cols = el("div", "labkit-rag-cols");
  cols.style.setProperty("--ncols", String(item.columns.length));
  const cards = [];
  function mark(id, on) {
    for (const [cid, card] of cards) card.classList.toggle("same", on && cid === id);
  }
  for (const col of item.columns) {
    const c = el("div", "labkit-rag-col" + (col.name === item.final ? " final" : ""));
    c.appendChild(el("h4", "", col.label));
    const ranks = u32s(col.ranks), starts = u32s(col.starts), scores = f32s(col.scores);
    const texts = strings(col.texts, col.texts_off), ids = strings(col.ids, col.ids_off);
    const top = Math.max(1e-9, ...scores.map(Math.abs));
    if (!ids.length) c.appendChild(el("div", "labkit-rag-meta", "(nothing found)"));
    for (let i = 0; i < ids.length; i++) {
      const card = el("div", "labkit-rag-hit" + (cites.has(ids[i]) ? " cited" : ""));
      const meta = el("div", "labkit-rag-meta");
      meta.appendChild(el("b", "", "#" + ranks[i]));
      meta.appendChild(el("code", "", ids[i]));
      meta.appendChild(el("span", "", "score " + scores[i].toFixed(3)));
      meta.appendChild(el("span", "", "char " + starts[i]));
      card.appendChild(meta);
      const bar = el("div", "labkit-rag-bar");
      bar.style.width = Math.round(100 * Math.abs(scores[i]) / top) + "%";
      card.appendChild(bar);
      const t = el("div", "labkit-rag-text");
      const full = texts[i];
      const short = full.length > maxChars ? full.slice(0, maxChars) + "…" : full;
      t.appendChild(highlighted(short, terms));
      card.appendChild(t);
      if (short !== full) {
        const more = el("span", "labkit-rag-more", "show all");
        let open = false;
        more.addEventListener("click", () => {
          open = !open;
          t.replaceChildren(highlighted(open ? full : short, terms));
          more.textContent = open ? "show less" : "show all";
        });
        card.appendChild(more);
      }
      card.title = "source " + ids[i].split("#")[0] + ", chunk starts at character " + starts[i];
      card.addEventListener("mouseenter", () => mark(ids[i], true));
      card.addEventListener("mouseleave", () => mark(ids[i], false));
      cards.push([ids[i], card]);
      c.appendChild(card);
    }
    cols.appendChild(c);
  }
  box.appendChild(cols);
  root.appendChild(box);
}

export default {
  render({ model, el: root }) {
    const wrap = el("div", "labkit-rag");
    root.appendChild(wrap);
    function draw() {
      wrap.replaceChildren();
      for (const item of model.get("items") || []) renderItem(item, model.get("max_chars") || 320, wrap);
    }
    draw();
    model.on("change:items", draw);
    model.on("change:max_chars", draw);
  },
};
