"""Lab 11 (evaluation): the shipped lm-eval tasks, the kit's scorer against the harness, the checks the lab's
exercises use (each must reject a plausible wrong answer), the arena's statistics, and the student version of the
lab run end to end."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from labkit.evaluation import arena as A
from labkit.evaluation import benchmark as B
from labkit.evaluation import metrics as Mt
from labkit.evaluation import scoring as S

ROOT = Path(__file__).resolve().parent.parent
LAB11 = ROOT / "labs" / "11_evaluation.ipynb"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The zoo models are tiny: on a busy 2-core machine two torch threads wait for each other (a forward pass
    15x slower than on one), as the lab itself notes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_shipped_tasks_are_what_the_generators_give():
    items = B.load_items()
    assert len(items) == 100
    assert {it["part"] for it in items} == {"world", "reading"}
    for it in items:
        assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4 and 0 <= it["answer"] < 4
    assert [json.dumps(x, sort_keys=True) for x in B.build_items()] == [json.dumps(x, sort_keys=True) for x in items]
    assert [json.loads(l)["text"] for l in B.PPL_FILE.read_text().splitlines()] == B.build_ppl_docs()
    # right answers are spread over the positions (no letter to guess)
    counts = [sum(it["answer"] == k for it in items) for k in range(4)]
    assert min(counts) >= 15, counts


def test_the_task_files_ship_in_the_package():
    """hatch's `packages = ["labkit"]` takes every file under labkit/ (not only .py) into the wheel."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'packages = ["labkit"]' in text
    for name in ("zoo_mc.yaml", "zoo_mc_letters.yaml", "zoo_ppl.yaml", "zoo_data.py", "zoo_mc.jsonl", "zoo_ppl.jsonl"):
        assert (B.TASKS_DIR / name).is_file(), name


@pytest.fixture(scope="module")
def draft_runs():
    before = os.environ.get("HF_HUB_OFFLINE")
    runs = B.run_lm_eval(["tiny-draft"], tasks=("zoo_mc", "zoo_ppl"), limit=12)
    assert os.environ.get("HF_HUB_OFFLINE") == before   # the call restores the environment
    return runs


def test_the_harness_runs_offline_and_agrees_with_the_kit_scorer(draft_runs):
    import labkit.models as M

    lm = M.load("tiny-draft")
    mc = draft_runs[("tiny-draft", "zoo_mc")]
    items = B.load_items()[:12]
    assert len(mc.loglikelihoods) == 12 and all(len(r) == 4 for r in mc.loglikelihoods)
    mine = S.continuation_logprobs(lm.model, lm.tokenizer, [(it["question"], " " + c) for it in items for c in it["choices"]])
    ref = [x for row in mc.loglikelihoods for x in row]
    assert max(abs(a - b) for a, b in zip(mine, ref)) < 1e-3
    assert math.isclose(B.harness_accuracy(mc, items), mc.metrics["acc"])
    assert math.isclose(B.harness_accuracy(mc, items, norm=True), mc.metrics["acc_norm"])
    ppl = draft_runs[("tiny-draft", "zoo_ppl")]
    docs = B.build_ppl_docs()[:12]
    res = B.ppl_agreement(S.text_nll, S.bits_per_byte, lm.model, lm.tokenizer, ppl, docs)
    assert res["ok"], res


def test_the_lab_checks_reject_plausible_mistakes(draft_runs):
    import labkit.models as M

    lm = M.load("tiny-draft")
    items = B.load_items()[:12]
    mc = draft_runs[("tiny-draft", "zoo_mc")]

    def separately(model, tok, context, continuation):   # tokenises the option on its own: a different seam
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        cont = tok(continuation.strip(), add_special_tokens=False)["input_ids"]
        return S.score_ids(model, [(ctx, cont)])[0][0]

    assert B.mc_agreement(S.continuation_logprob, S.pick, lm.model, lm.tokenizer, mc, items)["ok"]
    assert not B.mc_agreement(separately, S.pick, lm.model, lm.tokenizer, mc, items)["ok"]
    unnormalised = lambda lps, ch: (S.pick(lps, ch)[0], S.pick(lps, ch)[0])   # acc_norm = acc
    res = B.mc_agreement(S.continuation_logprob, unnormalised, lm.model, lm.tokenizer, mc, items)
    assert res["acc"] == res["harness_acc"] and not res["ok"]

    ppl = draft_runs[("tiny-draft", "zoo_ppl")]
    docs = B.build_ppl_docs()[:12]
    per_char = lambda nll, text: nll / len(text) / math.log(2)
    no_eot = lambda m, t, text: (lambda ids: (S.score_ids(m, [(ids[:1], ids[1:])])[0][0] * -1, len(ids) - 1))(
        t(text, add_special_tokens=False)["input_ids"])
    assert not B.ppl_agreement(no_eot, S.bits_per_byte, lm.model, lm.tokenizer, ppl, docs)["ok"]
    nats = lambda nll, text: nll / len(text.encode())
    assert not B.ppl_agreement(S.text_nll, nats, lm.model, lm.tokenizer, ppl, docs)["ok"]
    del per_char


def test_f1_check_against_the_mlqa_script():
    assert Mt.agrees_with_reference(Mt.f1, Mt.exact_match)
    no_norm = lambda p, t: Mt.f1(p.lower(), t.lower()) if p == p.lower() else 0.0
    sets = lambda p, t: Mt.f1(" ".join(sorted(set(p.split()))), " ".join(sorted(set(t.split()))))
    assert not Mt.agrees_with_reference(no_norm)
    assert not Mt.agrees_with_reference(sets)
    assert Mt.f1("the Big cat.", "big cat sat") == pytest.approx(0.8)


def test_overlap_metrics_disagree_with_the_labels_somewhere():
    labels = [y for *_, y in Mt.JUDGED]
    assert labels == [1, 0] * (len(labels) // 2)
    scores = [Mt.overlap_scores(c, ref) for _, ref, c, _ in Mt.JUDGED]
    for m in ("BLEU", "ROUGE-L", "F1"):
        assert Mt.pairwise_agreement([s[m] for s in scores], labels) < 0.5, m


def test_elo_and_bradley_terry():
    assert A.elo_update_ok(A.elo_update)
    assert not A.elo_update_ok(lambda a, b, s, k: (a + k * (s - 0.5), b - k * (s - 0.5)))  # ignores the gap
    assert not A.elo_update_ok(lambda a, b, s, k: (a + k * s, b - k * s))
    assert A.agrees_with_reference_bt(A.bradley_terry)

    def win_rate(battles):  # a plausible shortcut: ratings from raw win rates
        from collections import Counter
        w, n = Counter(), Counter()
        for a, b, s in battles:
            w[a] += s; w[b] += 1 - s; n[a] += 1; n[b] += 1
        r = {m: 400 * math.log10(w[m] / (n[m] - w[m])) for m in n}
        mean = sum(r.values()) / len(r)
        return {m: v - mean + 1000 for m, v in r.items()}
    assert not A.agrees_with_reference_bt(win_rate)
    battles = A.random_battles(4, 2000, 5)
    rated = A.bootstrap(battles, rounds=30)
    assert all(r.low <= r.rating <= r.high for r in rated)
    a = [True] * 50 + [False] * 10 + [True] * 10 + [False] * 30     # 60 right
    b = [True] * 50 + [True] * 8 + [False] * 12 + [False] * 30      # 58 right, on other questions
    d, lo, hi = A.paired_bootstrap(a, b)
    assert lo < 0 < hi and d == pytest.approx(0.02)
    d, lo, hi = A.paired_bootstrap([True] * 70 + [False] * 30, [True] * 40 + [False] * 60)
    assert lo > 0


def test_per_token_perplexity_rewards_small_tokens():
    from labkit.evaluation import perplexity as P

    scores = {u.tokenizer: u for u in P.unigram_scores(P.train_texts(300), B.build_ppl_docs()[:20])}
    byte, bpe = scores["bytes (256)"], scores["zoo BPE (4k)"]
    assert byte.token_perplexity < bpe.token_perplexity and byte.bits_per_byte > bpe.bits_per_byte


def test_student_version_of_lab11_runs_end_to_end(tmp_path):
    """`labkit student build`'s version of lab 11 (every exercise `...`) runs to the end in strict mode on the
    kit's own functions until the learner writes theirs."""
    import nbformat
    from nbclient import NotebookClient

    from labkit import grading

    reports = grading.write_student_versions(tmp_path, None, [LAB11.name])
    assert reports[0].solutions >= 5, reports[0]
    student = tmp_path / LAB11.name
    assert "### BEGIN SOLUTION" not in student.read_text()
    nb = nbformat.read(str(student), as_version=4)
    env = {"LABKIT_STRICT_EXERCISES": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = "\n".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells for o in c.get("outputs", []))
    assert "not answered yet" in text and "using the kit's own" in text
    assert "lm-eval: 4 models x 2 tasks" in text and "Bradley-Terry" in text


def test_bias_probe_covers_every_job():
    import labkit.models as M
    from labkit.evaluation import bias
    from labkit.zoo.corpus import JOBS

    lm = M.load("tiny-draft")
    res = bias.job_gender_probe(lm.model, lm.tokenizer)
    assert [b.job for b in res] == JOBS
    assert all(math.isfinite(b.log_odds) and 0 <= b.world_share <= 1 and b.world_people > 0 for b in res)
