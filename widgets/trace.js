// labkit agent trace (anywidget ES module): a timeline of model turns, tool calls, observations and notes,
// tokens and latency per step, the final answer, raw messages on demand, and Approve/Reject for pending calls.
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}
function fmtArgs(args) {
  return Object.entries(args || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}
function ms(seconds) {
  const v = (seconds || 0) * 1000;
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms";
}

function drawStep(step, i) {
  const li = el("li", "lk-step lk-" + step.kind + (step.error ? " lk-error" : ""));
  li.dataset.kind = step.kind;
  const badge = el("span", "lk-badge");
  if (step.kind === "model") badge.textContent = `${step.tokens_in}→${step.tokens_out} tokens · ${ms(step.seconds)}`;
  else if (step.kind === "tool") badge.textContent = ms(step.seconds);
  li.appendChild(badge);
  const who = step.agent ? `[${step.agent}] ` : "";
  if (step.kind === "model") {
    li.appendChild(el("span", "lk-kind", `${i + 1}. ${who}model`));
    if (step.calls && step.calls.length) {
      for (const c of step.calls) li.appendChild(el("code", "lk-call", `→ ${c.name}(${fmtArgs(c.args)})`));
    } else {
      li.appendChild(el("span", "lk-text", step.text));
    }
  } else if (step.kind === "tool") {
    li.appendChild(el("span", "lk-kind", `${i + 1}. ${who}tool`));
    li.appendChild(el("code", "lk-call", `${step.name}(${fmtArgs(step.args)})`));
    if (step.approved === true) li.appendChild(el("span", "lk-gate lk-yes", "approved"));
    if (step.approved === false) li.appendChild(el("span", "lk-gate lk-no", "rejected"));
    li.appendChild(el("pre", "lk-obs", step.observation));
  } else {
    li.appendChild(el("span", "lk-kind", `${i + 1}. ${who}note`));
    li.appendChild(el("span", "lk-text", step.text));
  }
  const raw = step.raw || {};
  if (Object.keys(raw).length) {
    const det = el("details", "lk-raw");
    det.appendChild(el("summary", null, "raw messages"));
    for (const [k, v] of Object.entries(raw)) {
      det.appendChild(el("div", "lk-meta", k));
      det.appendChild(el("pre", null, typeof v === "string" ? v : JSON.stringify(v, null, 1)));
    }
    li.appendChild(det);
  }
  return li;
}

function render({ model, el: root }) {
  const box = el("div", "lk-trace");
  root.appendChild(box);

  function draw() {
    box.replaceChildren();
    const head = el("div", "lk-head");
    head.appendChild(el("b", null, "Task: "));
    head.appendChild(document.createTextNode(model.get("task")));
    head.appendChild(el("div", "lk-meta",
      `model ${model.get("model_label")} · tools: ${(model.get("tools") || []).join(", ") || "none"}`));
    box.appendChild(head);
    const list = el("ol", "lk-timeline");
    (model.get("steps") || []).forEach((s, i) => list.appendChild(drawStep(s, i)));
    box.appendChild(list);

    const pending = model.get("pending") || {};
    if (pending.id) {
      const ap = el("div", "lk-approval");
      ap.appendChild(el("div", null, "The agent wants to run:"));
      ap.appendChild(el("pre", null, `${pending.name}(${fmtArgs(pending.args)})`));
      const yes = el("button", "lk-approve", "Approve");
      const no = el("button", "lk-reject", "Reject");
      const decide = (verdict) => () => {
        yes.disabled = true; no.disabled = true;
        model.set("decision", `${verdict}:${pending.id}`);
        model.save_changes();
      };
      yes.addEventListener("click", decide("approve"));
      no.addEventListener("click", decide("reject"));
      ap.append(yes, no);
      box.appendChild(ap);
    }
    if (model.get("running")) box.appendChild(el("div", "lk-running", "running…"));
    const answer = model.get("answer");
    const stopped = model.get("stopped");
    if (answer !== null && answer !== undefined) {
      const a = el("div", "lk-answer");
      a.appendChild(el("b", null, "Answer: "));
      a.appendChild(document.createTextNode(answer));
      box.appendChild(a);
    } else if (stopped) {
      const s = el("div", "lk-stopped");
      s.appendChild(el("b", null, "No answer: "));
      s.appendChild(document.createTextNode(stopped));
      box.appendChild(s);
    }
    if (model.get("summary")) box.appendChild(el("div", "lk-meta", model.get("summary")));
  }

  draw();
  for (const name of ["steps", "pending", "answer", "stopped", "running", "summary", "task"]) {
    model.on("change:" + name, draw);
  }
}

export default { render };
