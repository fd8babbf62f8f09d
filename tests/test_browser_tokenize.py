"""Real browser: JupyterLab on 127.0.0.1 + headless Chromium run lab 03 and the token widget renders."""
from __future__ import annotations

import pytest

from conftest import run_all, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KNOWN = "Tokenizers turn text into numbers: unbelievable, isn't it? 🙂"


def test_lab03_token_widget_renders_one_element_per_token(page, lab_server):
    from labkit import tokenize as tk

    expected = tk.tokenize(KNOWN, "cl100k").n_tokens
    run_all(page, lab_server, "03_tokenization.ipynb")
    # The first widget of the lab tokenizes KNOWN with cl100k.
    first = page.locator(".lk-tokens").first
    first.wait_for(timeout=60_000)
    row = first.locator('.lk-row[data-tokenizer="cl100k"]').first
    tokens = row.locator(".lk-tok")
    assert tokens.count() == expected
    assert tokens.nth(0).text_content() == "Token"
    # hover shows id and bytes
    first.scroll_into_view_if_needed()
    tokens.nth(1).hover()
    tip = first.locator(".lk-tip")
    assert tip.is_visible() and "id" in tip.inner_text() and "bytes" in tip.inner_text()
    # the whitespace toggle makes spaces visible
    first.locator(".lk-ws-toggle").check()
    page.wait_for_timeout(300)
    assert row.locator(".lk-tok").nth(2).text_content() == "·turn"
    # every widget in the lab rendered (no "Error displaying widget")
    assert page.locator("text=Error displaying widget").count() == 0
    errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()
    first.scroll_into_view_if_needed()
    screenshot(page, "lab03-token-widget.png")
    compare = page.locator(".lk-tokens").nth(1)  # the chars/bytes/bert/cl100k comparison
    compare.scroll_into_view_if_needed()
    compare.screenshot(path=str(screenshot.__globals__["ARTIFACTS"] / "token-widget-compare.png"))
