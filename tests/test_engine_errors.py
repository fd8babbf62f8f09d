"""Engine errors name the Python parameter; a magic shows its own flag for it; FinetuneConfig checks settings."""
from __future__ import annotations

import pytest

from labkit.errors import LabkitUsageError


def test_engine_messages_name_parameters_and_magics_name_flags():
    from labkit.agent.loop import build_graph
    from labkit.magics.agent import MAGICS

    with pytest.raises(LabkitUsageError) as err:
        build_graph(None, [], max_steps=0)
    msg = str(err.value)
    assert "`max_steps`" in msg and "--" not in msg
    assert MAGICS[0].translate(msg).startswith("--max-steps must")


def test_tokenize_magic_translates_the_engine_parameter(capsys):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    import labkit.tokenize as tk

    with pytest.raises(LabkitUsageError, match="`vocab_size` must"):
        tk.train("bpe", ["some text"], 5)
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "labkit")
    with pytest.raises(UsageError, match="--vocab must"):
        sh.run_cell_magic("tokenize", "--train bpe --vocab 5", "some text")


def test_finetune_config_checks_on_construction_and_fills_from_the_magic():
    from labkit.finetune import FinetuneConfig
    from labkit.magics.finetune import MAGICS, parser

    with pytest.raises(LabkitUsageError, match="makes no sense"):
        FinetuneConfig(steps=0)
    with pytest.raises(LabkitUsageError, match="unknown method"):
        FinetuneConfig(method="ppo")
    with pytest.raises(LabkitUsageError) as err:
        FinetuneConfig(steps=3, epochs=1)
    assert MAGICS[0].translate(str(err.value)) == "give --steps or --epochs, not both"
    with pytest.raises(LabkitUsageError, match="multiple"):
        FinetuneConfig(method="grpo", batch=5, num_generations=4)
    args = parser.parse_args(["--method", "dpo", "--steps", "3", "--out", "run1", "--generations", "2", "--no-overlay"])
    cfg = FinetuneConfig.from_args(args, reward="exact")
    assert (cfg.method, cfg.steps, cfg.name, cfg.num_generations, cfg.overlay, cfg.reward) == \
        ("dpo", 3, "run1", 2, False, "exact")
    assert cfg.learning_rate == 5e-5 and cfg.lora_alpha == 16
    assert FinetuneConfig.make(cfg, rank=4).rank == 4 and FinetuneConfig.make(cfg).steps == 3
    with pytest.raises(TypeError, match="rnak"):
        FinetuneConfig.make(None, rnak=4)


def test_finetune_keyword_and_config_forms_are_the_same_checks():
    from labkit.finetune import FinetuneConfig, finetune

    with pytest.raises(LabkitUsageError, match="makes no sense"):
        finetune("tiny-chat", [{"instruction": "a", "output": "b"}], "lora", steps=0)
    with pytest.raises(LabkitUsageError, match="makes no sense"):
        finetune("tiny-chat", [{"instruction": "a", "output": "b"}], config=FinetuneConfig(), batch=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        finetune("tiny-chat", [], "lora", not_a_setting=1)


def test_no_engine_message_names_a_magic_flag():
    """Engine error messages name Python parameters (in backquotes, which a magic turns into its flag); a
    ``--flag`` may appear only inside a backquoted command shown as an example (`%%rag --add PATH`)."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "labkit"
    above = ("magics", "widgets", "cli.py", "__main__.py", "doctor.py", "grading.py")
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if any(rel.startswith(a) or rel.endswith(a) for a in above) or "/cli" in rel or rel.startswith("zoo/build"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            parts = []
            for arg in node.exc.args:
                for sub in ast.walk(arg):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        parts.append(sub.value)
            text = re.sub(r"`[^`]*`", "", "".join(parts))  # commands shown in backquotes are examples
            if re.search(r"(?<![\w-])--[a-z]", text):
                bad.append(f"{rel}:{node.lineno}: {text[:80]!r}")
    assert not bad, "engine messages that name a magic flag:\n" + "\n".join(bad)
