"""Agent figures: tool and sandbox overheads, loop overhead, unreachable-server error time, tiny-chat speed.

    .venv/bin/python benchmarks/bench_agent.py [--eval N]

Prints one table. Targets from the issue: an unreachable openai: URL fails "within a few seconds"; the held-out
score of tiny-chat with tools is >= 80 % (``--eval N`` runs N tasks; the full run is ``labkit agent eval``).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(fn, repeat=1):
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t0) / repeat, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", type=int, default=0, help="also score tiny-chat on N held-out tasks")
    args = ap.parse_args()

    import labkit.agent as A
    from labkit.agent.chat_models import ScriptedChatModel
    from labkit.errors import LabkitUsageError

    rows = []

    # calculator vs Python's eval on the same arithmetic
    expr = "(347*86 + 12) * 3 - 2**10"
    t_calc, _ = timed(lambda: A.calculate(expr), 2000)
    t_eval, _ = timed(lambda: eval(expr), 2000)  # noqa: S307 - the unsafe baseline
    rows.append(("calculator (AST, bounded)", f"{t_calc * 1e6:.1f} µs", f"{t_calc / t_eval:.1f}x eval()"))

    # sandboxed python vs a bare python subprocess
    t_box, res = timed(lambda: A.run_python("print(6*7)"), 5)
    t_bare, _ = timed(lambda: subprocess.run([sys.executable, "-c", "print(6*7)"], capture_output=True), 5)
    rows.append(("python sandbox run", f"{t_box * 1000:.0f} ms",
                 f"{t_box / t_bare:.2f}x bare subprocess (netns: {res.network_isolated})"))
    t_loop, res = timed(lambda: A.run_python("while True: pass"))
    rows.append(("  infinite loop stopped after", f"{t_loop:.2f} s", res.error))
    t_mem, res = timed(lambda: A.run_python("x = bytearray(10**10)"))
    rows.append(("  memory bomb stopped after", f"{t_mem:.2f} s", res.error))

    # loop overhead: LangGraph run with a scripted model vs calling the tool directly
    model = ScriptedChatModel(replies=['<|call|>calculator(expression="2+2")', "4"])
    calc = A.resolve("calculator")[0]
    t_direct, _ = timed(lambda: calc.invoke({"expression": "2+2"}), 50)

    def one_run():
        model._turn = 0
        return A.run("2+2?", model=model, tools=[calc])

    one_run()
    t_agent, r = timed(one_run, 20)
    rows.append(("agent loop, 2 scripted model calls + 1 tool", f"{t_agent * 1000:.1f} ms",
                 f"{t_agent / t_direct:.0f}x one direct tool call ({t_direct * 1e6:.0f} µs)"))

    # unreachable OpenAI-compatible servers (langchain-openai imported first: the figure is the probe's)
    import langchain_openai  # noqa: F401

    for url, what in (("http://127.0.0.1:9/v1", "refused port"), ("http://10.255.255.1:8080/v1", "unroutable")):
        t0 = time.perf_counter()
        try:
            A.make_chat_model("openai:" + url)
            msg = "connected?!"
        except LabkitUsageError as exc:
            msg = str(exc)[:60] + "…"
        rows.append((f"unreachable openai: ({what})", f"{time.perf_counter() - t0:.2f} s", msg))

    # tiny-chat
    from labkit import models

    try:
        t_load, lm = timed(lambda: models.load("tiny-chat"))
    except Exception as exc:  # weights not built here
        rows.append(("tiny-chat", "-", f"not available: {str(exc)[:80]}"))
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(("tiny-chat load", f"{t_load:.2f} s", f"{lm.num_parameters:,} parameters, peak RSS {rss:.0f} MB"))
        chat = A.ZooChatModel(model_name="tiny-chat")
        A.run("What is 12 times 34?", model=chat)  # warm-up
        t_task, r = timed(lambda: A.run("What is 347 times 86?", model=chat), 3)
        toks = sum(s.tokens_out for s in r.model_steps)
        gen_s = sum(s.seconds for s in r.model_steps)
        rows.append(("tiny-chat agent task (calculator)", f"{t_task:.2f} s",
                     f"{r.n_model_calls} model calls, {toks} tokens out, {toks / max(gen_s, 1e-9):.0f} tok/s; "
                     f"answer {r.answer!r}"))
        if args.eval:
            from labkit.agent.evaluate import evaluate

            t_eval_run, res = timed(lambda: evaluate(chat, args.eval))
            rows.append((f"held-out eval ({args.eval} tasks)", f"{t_eval_run:.0f} s",
                         f"with tools {res.accuracy('tools'):.1%} (target >= 80 %), without {res.accuracy('direct'):.1%}"))

    w = max(len(r[0]) for r in rows)
    print(f"{'measure':{w}s}  {'value':>10s}  note")
    for name, value, note in rows:
        print(f"{name:{w}s}  {value:>10s}  {note}")


if __name__ == "__main__":
    main()
