"""%%finetune and labkit.finetune: data formats, methods (trl/peft), checkpoints, resume, errors, the magic."""
from __future__ import annotations

import errno
import json
import os

import pytest

from labkit.errors import LabkitError, LabkitUsageError


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("labkit_home")
    old = os.environ.get("LABKIT_HOME")
    os.environ["LABKIT_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("LABKIT_HOME", None)
    else:
        os.environ["LABKIT_HOME"] = old


@pytest.fixture(scope="module")
def toy(home):
    from labkit.finetune import toy

    model, tok = toy.model("micro", seed=0)
    folder = toy.model_folder(home / "toy-micro")
    return model, tok, folder


@pytest.fixture(scope="module")
def chats():
    from labkit.zoo.corpus import Corpus

    return [{"messages": m} for m in Corpus(0).chat_examples("train", 32)]


PREFS = [{"prompt": f"What is {a} plus {b}?", "chosen": f"The answer is {a + b}.", "rejected": f"The answer is {a + b + 7}."}
         for a, b in [(2, 3), (4, 1), (5, 5), (7, 2), (3, 3), (6, 1), (8, 1), (2, 2)]]


# ------------------------------------------------------------------------------------------------------- data
def test_formats_detected_and_converted():
    from labkit.finetune.data import load_data

    alpaca = load_data([{"instruction": "Add", "input": "2 and 3", "output": "5"}], "lora")
    assert alpaca.format == "alpaca"
    assert alpaca.rows[0] == {"prompt": [{"role": "user", "content": "Add\n\n2 and 3"}],
                              "completion": [{"role": "assistant", "content": "5"}]}
    share = load_data([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}], "lora")
    assert share.format == "sharegpt" and share.rows[0]["completion"][0]["content"] == "hello"
    chat = load_data([{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                    {"role": "assistant", "content": "a"}]}], "full")
    assert chat.format == "chatml" and len(chat.rows[0]["prompt"]) == 2
    text = load_data("first document\n\nsecond\ndocument continues\n\nthird", "full")
    assert text.format == "text" and [r["text"] for r in text.rows] == ["first document", "second\ndocument continues", "third"]
    pref = load_data(PREFS, "dpo")
    assert pref.kind == "preference" and pref.rows[0]["chosen"][0]["role"] == "assistant"
    # preference pairs for SFT: train on the chosen reply; chats for GRPO: the last reply is the answer
    assert load_data(PREFS, "lora").rows[0]["completion"][0]["content"].startswith("The answer is 5")
    grpo = load_data([{"prompt": "What is 2+3?", "answer": 5}], "grpo")
    assert grpo.rows[0]["answer"] == "5"


def test_malformed_lines_reported_with_numbers():
    from labkit.finetune.data import DataError, load_data

    body = "\n".join([
        '{"instruction": "a", "output": "b"}',
        '{"instruction": "a", "output": }',          # line 2: bad JSON
        '{"instruction": "", "output": "b"}',        # line 3: empty instruction
        '{"messages": [{"role": "user", "content": "x"}]}',  # line 4: another format
        '{"instruction": "c", "output": "d"}',
    ])
    with pytest.raises(DataError) as err:
        load_data(body, "lora")
    msg = str(err.value)
    assert "line 2: invalid JSON" in msg and "line 3:" in msg and "line 4:" in msg and "line 1" not in msg
    assert "`skip_bad`" in msg
    ds = load_data(body, "lora", skip_bad=True)
    assert len(ds) == 2 and [n for n, _ in ds.skipped] == [2, 3, 4]


def test_data_that_does_not_fit_the_method():
    from labkit.finetune.data import load_data

    with pytest.raises(LabkitUsageError, match="preference pairs"):
        load_data([{"instruction": "a", "output": "b"}], "dpo")
    with pytest.raises(LabkitUsageError, match="could not recognise"):
        load_data([{"foo": 1}], "lora")
    with pytest.raises(LabkitUsageError, match="same"):
        load_data([{"prompt": "p", "chosen": "x", "rejected": "x"}], "dpo")


def test_nonsensical_numbers_and_unknown_targets(toy):
    from labkit.finetune import finetune

    model, tok, _ = toy
    rows = [{"instruction": "a", "output": "b"}]
    for bad in (dict(steps=0), dict(lr=-1.0), dict(batch=0), dict(rank=0), dict(lr=float("nan")), dict(epochs=-2)):
        with pytest.raises(LabkitUsageError, match="makes no sense"):
            finetune(model, rows, "lora", tokenizer=tok, show=False, **bad)
    with pytest.raises(LabkitUsageError, match="unknown method"):
        finetune(model, rows, "ppo", tokenizer=tok, show=False)
    with pytest.raises(LabkitUsageError) as err:
        finetune(model, rows, "lora", tokenizer=tok, targets="q_proj,attn_out", steps=1, show=False)
    assert "attn_out" in str(err.value) and "v_proj" in str(err.value) and "gate_proj" in str(err.value)


# --------------------------------------------------------------------------------------------------- training
def test_lora_trains_saves_and_registers(toy, chats, home):
    from labkit import models
    from labkit.finetune import finetune, resolve

    model, tok, _ = toy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = finetune(model, chats, "lora", tokenizer=tok, rank=4, steps=12, batch=8, lr=5e-3, name="t_lora", show=False)
    assert r.step == 12 and len(r.losses) == 12 and not r.stopped
    assert r.losses[-1] < r.losses[0]
    assert 0 < r.trainable_params < r.total_params / 5
    assert r.tokens_per_s > 0 and r.peak_memory > 0
    # the caller's model was not modified (training works on a copy)
    assert all((model.state_dict()[k] == v).all() for k, v in before.items())
    assert (r.path / "adapter" / "adapter_config.json").is_file()
    assert (r.path / "model" / "config.json").is_file() and (r.path / "README.md").is_file()
    assert resolve("t_lora") == r.path / "model"
    loaded = models.load(str(resolve("t_lora")))
    assert loaded.kind == "causal-lm" and loaded.num_parameters == sum(p.numel() for p in model.parameters())
    assert isinstance(r.generate("Hello!", max_new_tokens=4), str)
    assert "t_lora" in repr(r) and "loss" in r._repr_html_()


def test_full_finetune_trains_everything(toy, chats):
    from labkit.finetune import finetune

    model, tok, _ = toy
    r = finetune(model, chats, "full", tokenizer=tok, steps=3, batch=4, name="t_full", show=False, save_every=0)
    assert r.trainable_params == r.total_params and len(r.losses) == 3


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_losses(toy, chats):
    from labkit.finetune import finetune
    from labkit.finetune.callbacks import StopSignal

    model, tok, _ = toy
    kw = dict(tokenizer=tok, rank=4, steps=6, batch=4, lr=5e-3, seed=3, show=False, save_every=2)
    full = finetune(model, chats, "lora", name="t_straight", **kw)

    class StopAfter(StopSignal):  # "the Stop button", pressed during step 3
        calls = 0

        def is_set(self):
            self.calls += 1
            if self.calls >= 3:
                self.set("test stop")
            return super().is_set()

    first = finetune(model, chats, "lora", name="t_resumed", stop=StopAfter(), **kw)
    assert first.stopped and first.step == 3 and first.checkpoint.name == "checkpoint-3"
    assert not (first.path / "checkpoints" / ".partial").exists()
    second = finetune(model, None, "lora", name="t_resumed", resume=True, **kw)  # data read back from the run
    assert second.resumed_from == 3 and second.step == 6
    assert second.steps == [1, 2, 3, 4, 5, 6]
    assert second.losses == pytest.approx(full.losses, rel=1e-5, abs=1e-6)


@pytest.mark.slow  # reads the run "t_resumed" that test_resume_reproduces_uninterrupted_losses (slow) leaves
def test_resume_needs_a_run_and_the_same_settings(toy, chats):
    from labkit.finetune import finetune

    model, tok, _ = toy
    with pytest.raises(LabkitUsageError, match="nothing to resume"):
        finetune(model, chats, "lora", tokenizer=tok, name="never_ran", resume=True, show=False)
    with pytest.raises(LabkitUsageError, match="`resume` must repeat"):
        finetune(model, chats, "lora", tokenizer=tok, name="t_resumed", resume=True, steps=9, batch=4, lr=5e-3,
                 seed=3, show=False)


@pytest.mark.slow
def test_full_disk_keeps_previous_checkpoint(toy, chats, monkeypatch):
    import transformers

    from labkit.finetune import finetune, runs

    model, tok, _ = toy
    real = transformers.Trainer._save_optimizer_and_scheduler
    calls = {"n": 0}

    def failing(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: the disk fills up half-way through writing it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", failing)
    with pytest.raises(LabkitError) as err:
        finetune(model, chats, "lora", tokenizer=tok, steps=4, batch=4, save_every=2, name="t_disk", show=False)
    assert "disk is full" in str(err.value) and "checkpoint-2" in str(err.value) and "intact" in str(err.value)
    folder = runs.run_dir("t_disk")
    assert [p.name for p in runs.checkpoints(folder)] == ["checkpoint-2"]
    assert not (folder / "checkpoints" / ".partial").exists()
    assert (folder / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors").is_file()
    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", real)
    resumed = finetune(model, chats, "lora", tokenizer=tok, steps=4, batch=4, save_every=2, name="t_disk",
                       resume=True, show=False)
    assert resumed.resumed_from == 2 and resumed.step == 4


def test_unwritable_output_is_a_clear_error(toy, chats, tmp_path):
    from labkit.finetune import finetune

    model, tok, _ = toy
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(LabkitError, match="cannot write the run"):
        finetune(model, chats, "lora", tokenizer=tok, steps=1, output_dir=blocker, name="x", show=False)


@pytest.mark.slow
def test_dpo_and_reward_model(toy):
    from labkit.finetune import finetune

    model, tok, _ = toy
    dpo = finetune(model, PREFS, "dpo", tokenizer=tok, steps=4, batch=4, lr=5e-3, name="t_dpo", show=False, save_every=0)
    assert len(dpo.losses) == 4 and len(dpo.rewards) == 4 and dpo.curve.reward_label.startswith("reward margin")
    assert dpo.rewards[-1] > dpo.rewards[0]  # chosen pulls away from rejected on the training pairs
    assert dpo.losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at the start: ln 2
    assert dpo.losses[-1] < dpo.losses[0]  # and the loss falls from there (it rose when DPO was mis-set)
    rm = finetune(model, PREFS, "reward", tokenizer=tok, steps=6, batch=8, lr=3e-3, name="t_rm", show=False, save_every=0)
    assert len(rm.losses) == 6
    good, bad = rm.score(PREFS[0]["prompt"], PREFS[0]["chosen"]), rm.score(PREFS[0]["prompt"], PREFS[0]["rejected"])
    assert isinstance(good, float) and good > bad


def test_dpo_trains_on_what_the_chat_template_renders(toy, tmp_path):
    """The ids trl's DPOTrainer builds = the chat template's rendering (no extra or missing BOS/EOS, the leading
    space after <|assistant|> kept), so the log-probabilities DPO moves are those the model generates with."""
    import copy

    import torch

    from labkit.finetune.engine import _trainer_for

    model, tok, _ = toy
    row = {"prompt": [{"role": "user", "content": PREFS[0]["prompt"]}],
           "chosen": [{"role": "assistant", "content": PREFS[0]["chosen"]}],
           "rejected": [{"role": "assistant", "content": PREFS[0]["rejected"]}]}
    from datasets import Dataset

    common = dict(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to=[], use_cpu=True,
                  save_strategy="no")
    cls, kwargs = _trainer_for("dpo", common, copy.deepcopy(model), tok, Dataset.from_list([row]), None, 64, 0.1, None, 4, 8, 1.0,
                               False)
    trainer = cls(**kwargs)
    ex = trainer.train_dataset[0]
    prompt = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
    for key in ("chosen", "rejected"):
        full = tok.apply_chat_template(row["prompt"] + row[key], return_dict=True)["input_ids"]
        assert ex["prompt_ids"] == prompt and ex["prompt_ids"] + ex[key + "_ids"] == full
        assert tok.decode(ex[key + "_ids"]) == " " + row[key][0]["content"] + "<|end|>\n"
    assert prompt.count(tok.bos_token_id) == 1 and prompt[0] == tok.bos_token_id
    # trl's summed completion log-probability = the one computed from the chat template by hand
    batch = trainer.data_collator([ex])
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        trl_logps = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  labels=labels, fused_lm_head=True).log_probs.sum(1)
        full = torch.tensor([prompt + ex["chosen_ids"]])
        logp = torch.log_softmax(model(full).logits[0, :-1].float(), -1)
        by_hand = logp[torch.arange(len(prompt) - 1, full.shape[1] - 1), full[0, len(prompt):]].sum()
    assert float(trl_logps[0]) == pytest.approx(float(by_hand), abs=1e-4)


@pytest.mark.slow
def test_grpo_with_rule_based_reward(toy):
    from labkit.finetune import finetune
    from labkit.finetune.rewards import arithmetic

    assert arithmetic(["The answer is 12.", "13", "none", [{"role": "assistant", "content": "12"}]],
                      ["12", "12", "12", "12"]) == [1.0, pytest.approx(0.5 * (1 - 1 / 12)), 0.0, 1.0]
    model, tok, _ = toy
    probs = [{"prompt": f"What is {a} plus {b}?", "answer": a + b} for a in range(4) for b in range(4)]
    r = finetune(model, probs, "grpo", tokenizer=tok, steps=2, batch=4, num_generations=4, max_new_tokens=6,
                 name="t_grpo", show=False, save_every=0)
    assert len(r.rewards) == 2 and all(0.0 <= x <= 1.0 for x in r.rewards)
    with pytest.raises(LabkitUsageError, match="multiple"):
        finetune(model, probs, "grpo", tokenizer=tok, steps=1, batch=6, num_generations=4, show=False)


@pytest.mark.slow
def test_qlora_uses_4bit_base_weights(toy, chats):
    pytest.importorskip("bitsandbytes")
    from labkit.finetune import finetune
    from labkit.finetune.quant import load_quantized, weight_bytes

    model, tok, folder = toy
    q = load_quantized(folder)
    assert type(q.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert weight_bytes(q) < weight_bytes(model)
    r = finetune(str(folder), chats, "qlora", steps=2, batch=4, name="t_qlora", show=False, save_every=0)
    assert len(r.losses) == 2 and r.trainable_params < r.total_params
    assert (r.path / "model" / "config.json").is_file()  # merged into the full-precision base


# ---------------------------------------------------------------------------------------------- widget, magic
def test_training_widget_sends_float_buffers():
    import numpy as np

    from labkit.finetune.callbacks import Curve
    from labkit.widgets import payload_bytes
    from labkit.widgets.training import TrainingWidget

    c = Curve("run", "grpo", "mean reward", steps=list(range(1, 201)), loss=[1.0 / i for i in range(1, 201)],
              reward=[None] * 200)
    w = TrainingWidget([c])
    run = w.runs[0]
    assert np.frombuffer(run["loss"], "<f4")[1] == pytest.approx(0.5)
    assert np.isnan(np.frombuffer(run["reward"], "<f4")).all()
    code = len(w._esm) + len(w._css)  # the ES module and CSS travel once per widget
    assert payload_bytes(w) - code < 4 * 200 * 3 + 1500  # three float32 curves + a little JSON


@pytest.fixture
def ip(home, ip):  # conftest's shell (start_ipython is a singleton: it returns the shell only once), in a temp home
    return ip


def test_magic_trains_and_reports_bad_lines(ip, toy):
    from IPython.core.error import UsageError

    _, _, folder = toy
    body = '{"instruction": "Say hi", "output": "Hello!"}\n{"instruction": "Say bye", "output": "Bye!"}\n'
    result = ip.run_cell_magic("finetune", f"--model {folder} --method lora --rank 2 --steps 2 --batch 2 --out m_lora "
                                           f"--quiet --save-every 0", body)
    assert ip.user_ns["m_lora"] is result and result.step == 2 and result.data.format == "alpaca"
    with pytest.raises(UsageError, match="line 3: invalid JSON"):
        ip.run_cell_magic("finetune", f"--model {folder} --steps 1 --quiet", body + '{"instruction": }\n')
    with pytest.raises(UsageError, match="line 2"):
        ip.run_cell_magic("finetune", f"--model {folder} --steps 1 --quiet", '{"instruction": "a", "output": "b"}\nnot json\n')
    with pytest.raises(UsageError, match="makes no sense"):
        ip.run_cell_magic("finetune", f"--model {folder} --steps 0 --quiet", body)
    with pytest.raises(UsageError, match="needs training data"):
        ip.run_cell_magic("finetune", f"--model {folder}", "  \n")
    ip.user_ns["prefs"] = PREFS
    with pytest.raises(UsageError, match="no-such-model|Unknown model"):
        ip.run_line_magic("finetune", "--model no-such-model --method dpo --data prefs --quiet")
    assert ip.run_line_magic("finetune", "--help") is None


# -------------------------------------------------------------------------------------------------- merging
def test_merging_linear_slerp_ties():
    import torch

    from labkit.finetune import merging

    torch.manual_seed(0)
    base = torch.nn.Linear(4, 3)
    a, b = merging.linear([base, base]), merging.linear([base, base])
    with torch.no_grad():
        a.weight.add_(1.0)
        b.weight.sub_(1.0)
    mid = merging.linear([a, b])
    assert torch.allclose(mid.weight, base.weight, atol=1e-6)
    assert torch.allclose(merging.linear([a, b], [1.0, 0.0]).weight, a.weight)
    # SLERP: ends are the inputs; the middle keeps the norm a straight line would shrink
    assert torch.allclose(merging.slerp(a, b, 0.0).weight, a.weight, atol=1e-6)
    assert torch.allclose(merging.slerp(a, b, 1.0).weight, b.weight, atol=1e-6)
    x, y = torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        x.weight.copy_(torch.tensor([[1.0, 0.0]]))
        y.weight.copy_(torch.tensor([[0.0, 1.0]]))
    s = merging.slerp(x, y, 0.5).weight
    assert torch.allclose(s.norm(), torch.tensor(1.0), atol=1e-5) and torch.allclose(s, torch.full((1, 2), 2 ** -0.5))
    # TIES: opposite task vectors on a weight -> the majority sign wins; small entries are trimmed
    t1, t2, t3 = (merging.linear([base, base]) for _ in range(3))
    with torch.no_grad():
        t1.weight[0, 0] += 2.0
        t2.weight[0, 0] += 1.0
        t3.weight[0, 0] -= 0.5
        t1.weight[1, 1] += 0.001  # tiny: trimmed at density 0.1
    m = merging.ties(base, [t1, t2, t3], density=0.1)
    assert m.weight[0, 0].item() == pytest.approx(base.weight[0, 0].item() + 1.5, abs=1e-5)  # mean of 2.0 and 1.0
    assert m.weight[1, 1].item() == pytest.approx(base.weight[1, 1].item(), abs=1e-6)
    with pytest.raises(LabkitUsageError, match="architecture"):
        merging.linear([base, torch.nn.Linear(3, 3)])


def test_heldout_loss_and_step_cost(toy, chats):
    import math

    import torch

    from labkit.finetune import heldout_loss, measure

    model, tok, _ = toy
    loss = heldout_loss(model, tok, chats[:4])
    assert abs(loss - math.log(len(tok))) < 1.0  # a random model is close to the uniform guess
    assert heldout_loss(model, tok, [{"text": "Once upon a time"}]) > 0
    x = torch.randint(0, len(tok), (4, 16))
    plain = measure.step_cost(model, x, steps=1)
    accum = measure.step_cost(model, x, grad_accum=2, steps=1)
    ckpt = measure.step_cost(model, x, checkpointing=True, steps=1)
    assert accum.activation_bytes < 0.7 * plain.activation_bytes
    assert ckpt.activation_bytes < plain.activation_bytes
    assert accum.grad_norm == pytest.approx(plain.grad_norm, rel=1e-4)  # the same gradient
    a, b = measure.fit_power_law([10, 100, 1000], [4.0 * 10 ** -0.2, 4.0 * 100 ** -0.2, 4.0 * 1000 ** -0.2])
    assert a == pytest.approx(4.0) and b == pytest.approx(0.2)


def test_train_state_bytes_counts_the_same_on_a_copy_or_in_place(toy):
    import copy

    import torch

    from labkit.finetune import measure

    model = copy.deepcopy(toy[0])  # the module's toy stays untouched for the other tests
    x = torch.randint(0, len(toy[1]), (2, 8))
    before = [p.detach().clone() for p in model.parameters()]
    on_copy = measure.train_state_bytes(model, x)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the default leaves the model alone
    assert all(p.grad is None for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())
    assert on_copy.grads == 4 * n and on_copy.optimizer >= 8 * n  # fp32: a gradient and AdamW's two moments each
    in_place = measure.train_state_bytes(model, x, inplace=True)
    assert in_place == on_copy  # the same weights, gradients and optimizer bytes (a dataclass compares fields)
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the step was taken on it


@pytest.mark.slow
def test_kernel_interrupt_stops_cleanly_with_a_checkpoint(toy, chats):
    import signal

    from labkit.finetune import finetune
    from labkit.finetune.callbacks import StopSignal

    model, tok, _ = toy

    class InterruptDuringStep2(StopSignal):  # what the Stop button does in a busy kernel: SIGINT via the server
        calls = 0

        def is_set(self):
            self.calls += 1
            if self.calls == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return super().is_set()

    r = finetune(model, chats, "lora", tokenizer=tok, steps=5, batch=4, name="t_sigint", show=False,
                 stop=InterruptDuringStep2())
    assert r.stopped and r.step in (2, 3) and "interrupted" in r.stop_reason
    assert r.checkpoint is not None and r.checkpoint.name == f"checkpoint-{r.step}"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handler is gone again


def test_magic_data_that_is_not_valid_unicode(ip, toy):
    from IPython.core.error import UsageError

    _, _, folder = toy
    body = '{"instruction": "Say hi \\ud800", "output": "Hello!"}\n{"instruction": "Say bye", "output": "Bye!"}\n'
    with pytest.raises(UsageError, match=r"line 1: text that is not valid Unicode"):
        ip.run_cell_magic("finetune", f"--model {folder} --steps 1 --quiet", body)
    with pytest.raises(UsageError, match="not valid Unicode"):
        ip.run_cell_magic("finetune", f"--model {folder} --steps 1 --quiet", "plain text with \udcff in it\n")
