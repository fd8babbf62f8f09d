"""The attention and generation widgets in a real JupyterLab (headless Chromium)."""
from __future__ import annotations

import json

import pytest

from conftest import only_loopback, run_all, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _notebook(cells):
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                       "source": src} for i, src in enumerate(cells)],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def test_attention_widget_hover_and_views(lab_server, page):
    from test_attend import make_micro_model

    make_micro_model(lab_server.root / "micro")
    nb = _notebook([
        "%load_ext labkit",
        "%%attend --model minilm\nThe cat sat on the mat because it was tired.",
        "%%attend --model micro --view matrix\nMira Vell is a baker.",
        "%%generate --model micro --step --max-new-tokens 5\nMira",
        "%%generate --model micro --max-new-tokens 8 --temperature 0\nMira Vell",
        "from labkit.zoo.corpus import world\nlong_text = ' '.join(world(0).text().split()[:700])\n"
        "from labkit.attend import attend\nbig = attend(long_text, 'minilm', view='model')\nbig",
    ])
    (lab_server.root / "attend_browser.ipynb").write_text(json.dumps(nb))
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    run_all(page, lab_server, "attend_browser.ipynb")

    head = page.locator(".lk-attn").first
    head.wait_for(timeout=60_000)
    queries = head.locator(".lk-tok-q")
    assert queries.count() == 13  # [CLS] the cat ... [SEP]
    keys = head.locator(".lk-tok-k")
    assert keys.nth(3).get_attribute("data-weight") in ("", None)
    queries.nth(9).hover()  # "it"
    page.wait_for_timeout(200)
    assert "lk-active" in (queries.nth(9).get_attribute("class") or "")
    weights = [float(keys.nth(j).get_attribute("data-weight")) for j in range(13)]
    assert abs(sum(weights) - 1) < 0.02  # the isolated token's row of attention, shown on the keys
    highlighted_before = weights
    queries.nth(2).hover()  # "cat": a different row lights up
    page.wait_for_timeout(200)
    assert "lk-active" not in (queries.nth(9).get_attribute("class") or "")
    weights = [float(keys.nth(j).get_attribute("data-weight")) for j in range(13)]
    assert weights != highlighted_before
    screenshot(page, "attend_head_view.png")

    # model view: thumbnails for every layer x head; clicking one opens it in the head view
    head.locator(".lk-attn-tab[data-view=model]").click()
    thumbs = head.locator(".lk-attn-thumb")
    thumbs.first.wait_for()
    assert thumbs.count() == 6 * 12
    thumbs.nth(12 + 3).click()  # layer 1, head 3
    page.wait_for_timeout(300)
    assert head.locator(".lk-attn-layer").input_value() == "1"
    assert head.locator(".lk-attn-head").input_value() == "3"

    # matrix view of a causal model draws on a canvas
    matrix = page.locator(".lk-attn").nth(1)
    assert matrix.locator("canvas.lk-attn-matrix").count() == 1

    # generation step view: tokens, a distribution panel, the logit lens
    gen = page.locator(".lk-gen").first
    gen.wait_for(timeout=60_000)
    assert gen.locator(".lk-gen-tok").count() == 5
    assert gen.locator(".lk-gen-row").count() == 20
    assert gen.locator(".lk-gen-lens tr").count() == 3
    gen.locator(".lk-gen-tok").nth(2).click()
    assert "step 2" in gen.locator(".lk-gen-h").first.text_content()
    screenshot(page, "generate_step_view.png")

    # a slider asks the kernel to re-sample: top-k 1 makes every step the model's top choice
    gen.locator("input.lk-gen-top-k").evaluate(
        "el => { el.value = '1'; el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change')); }")
    page.wait_for_function("() => document.querySelector('.lk-gen .lk-gen-summary').textContent.includes('top-k 1')",
                           timeout=180_000)  # generous: the kernel re-samples on a shared, busy machine
    assert "rank 0" in gen.locator(".lk-gen-h").first.text_content()

    # the streamed cell ends with the result view (the streaming display is replaced, not left behind)
    streamed = page.locator(".jp-Cell").nth(4)
    streamed.locator(".labkit-generate-static, .lk-gen").first.wait_for(timeout=60_000)
    assert "8 new tokens" in streamed.text_content()
    # 512 tokens: the model view arrives with thumbnails only; opening a head fetches that layer from the kernel
    big = page.locator(".lk-attn").nth(2)
    big.scroll_into_view_if_needed()
    assert big.locator(".lk-attn-thumb").count() == 6 * 12
    big.locator(".lk-attn-thumb").nth(4 * 12 + 7).click()  # layer 4, head 7: not sent yet
    big.locator(".lk-tok-q").first.wait_for(timeout=120_000)
    assert big.locator(".lk-tok-q").count() == 512
    assert big.locator(".lk-attn-layer").input_value() == "4"
    ms = big.evaluate("""el => { const q = el.querySelectorAll('.lk-tok-q')[300]; const t0 = performance.now();
        q.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})); return performance.now() - t0; }""")
    keys = big.locator(".lk-tok-k")
    assert abs(sum(float(keys.nth(j).get_attribute("data-weight") or 0) for j in range(0, 512, 1)) - 1) < 0.05
    print(f"hover repaint at 512 tokens: {ms:.0f} ms")
    big.locator(".lk-attn-tab[data-view=matrix]").click()
    assert big.locator("canvas.lk-attn-matrix").count() == 1
    screenshot(page, "attend_512.png")
    assert not [e for e in errors if "lk-" in e or "attention" in e or "generate" in e], errors


def test_bertviz_head_view_renders_offline(lab_server, page):
    """bertviz's own head view in JupyterLab with every request off the machine refused: its scripts come from
    labkit's copies, so the view draws its tokens and attention lines anyway."""
    from test_attend import make_micro_model

    make_micro_model(lab_server.root / "micro")
    blocked = only_loopback(page)
    nb = _notebook(["%load_ext labkit", "%%attend --model micro --view bertviz\nMira gave the key to Tam."])
    (lab_server.root / "bertviz_offline.ipynb").write_text(json.dumps(nb))
    run_all(page, lab_server, "bertviz_offline.ipynb")
    svg = page.locator("[id^=bertviz] svg").first
    svg.wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('[id^=bertviz] svg text').length > 4", timeout=30_000)
    texts = page.locator("[id^=bertviz] svg text").all_text_contents()
    assert any("Mira" in t for t in texts) and any("Tam" in t for t in texts), texts
    assert page.locator("[id^=bertviz] svg line, [id^=bertviz] svg path").count() > 0  # attention drawn
    svg.scroll_into_view_if_needed()
    screenshot(page, "bertviz_head_view_offline.png")
    assert not [u for u in blocked if "cdnjs" in u], blocked   # nothing even tried the CDN


def test_bertviz_neuron_view_renders_offline(lab_server, page):
    """bertviz's neuron view (minilm's queries and keys, run in bertviz's own BERT) renders with every request off
    the machine refused."""
    blocked = only_loopback(page)
    nb = _notebook(["%load_ext labkit",
                    "%%attend --model minilm --view neuron --layer 2 --head 3 --pair\nMira gave the key to Tam.\nShe thanked her."])
    (lab_server.root / "bertviz_neuron.ipynb").write_text(json.dumps(nb))
    run_all(page, lab_server, "bertviz_neuron.ipynb")
    page.wait_for_function("() => document.querySelectorAll('[id^=bertviz] svg text').length > 4", timeout=60_000)
    texts = page.locator("[id^=bertviz] svg text").all_text_contents()
    assert any("mira" in t.lower() for t in texts), texts
    page.locator("[id^=bertviz] svg").first.scroll_into_view_if_needed()
    screenshot(page, "bertviz_neuron_view_offline.png")
    assert not [u for u in blocked if "cdnjs" in u], blocked
