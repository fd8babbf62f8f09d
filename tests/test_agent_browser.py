"""Real browser: the agent trace widget renders in JupyterLab, and --approve waits for a click that really
reaches the kernel (Approve runs the tool, Reject does not)."""
from __future__ import annotations

import os

import nbformat
import pytest

from conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """
%load_ext labkit
import labkit.agent as A
ran = []

@A.tool(dangerous=True)
def launch(target: str) -> str:
    '''Launch something.

    Args:
        target: what to launch
    '''
    ran.append(target)
    return f"launched {target}"

coder = A.ScriptedChatModel(replies=['<|call|>launch(target="kite")', '<|call|>launch(target="rocket")', "done"])
"""
AGENT = """%%agent --model coder --tools launch --approve --max-steps 3 --out res
Launch things"""


def _write_notebook(root):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP.strip()), nbformat.v4.new_code_cell(AGENT)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, root / "agent_approval_test.ipynb")


def test_trace_widget_and_approval_buttons(page, lab_server):
    _write_notebook(lab_server.root)
    page.goto(lab_server.url(f"lab/workspaces/agent{os.getpid()}/tree/agent_approval_test.ipynb?reset"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                           timeout=120_000)
    print("kernel idle; running all cells", flush=True)
    # do not await the command: it resolves only when every cell has run, and one waits for our click
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    trace = page.locator(".lk-trace").first
    trace.wait_for(timeout=120_000)
    approve = trace.locator("button.lk-approve")
    approve.wait_for(timeout=120_000)
    print("approval requested", flush=True)
    assert "launch" in trace.locator(".lk-approval").inner_text()
    screenshot(page, "agent-approval.png")
    approve.click()  # first call: approved; the agent thread receives the click
    trace.locator(".lk-step.lk-tool", has_text="launched kite").first.wait_for(timeout=120_000)
    print("the kernel received the approval", flush=True)
    reject = trace.locator("button.lk-reject:not([disabled])")
    reject.wait_for(timeout=120_000)
    reject.click()  # second call: rejected
    print("clicked approve and reject", flush=True)
    trace.locator(".lk-answer").wait_for(timeout=60_000)
    steps = trace.locator(".lk-step")
    assert steps.count() == 5
    assert "approved" in steps.nth(1).inner_text() and "launched kite" in steps.nth(1).inner_text()
    assert "rejected" in steps.nth(3).inner_text()
    assert "done" in trace.locator(".lk-answer").inner_text()
    trace.scroll_into_view_if_needed()
    screenshot(page, "agent-trace.png")
    assert page.locator("text=Error displaying widget").count() == 0
