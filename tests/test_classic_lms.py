"""labkit.classic (lab 02): n-gram counts that agree with nltk.lm's, checks that accept a right answer written
differently and reject the mistakes learners make, and the neural models' plumbing (window, char RNNs, seq2seq)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.classic import ngram as G
from labkit.errors import LabkitUsageError

ROOT = Path(__file__).resolve().parent.parent
LAB02 = ROOT / "labs" / "02_traditional_lms.ipynb"
CORPUS = [["a", "b", "a", "c"], ["b", "a", "b"], ["c", "a", "d", "a", "b"], ["a"]]


# ------------------------------------------------------------------------------------------------ n-grams
def test_the_engines_import_without_torch():
    code = ("import sys, labkit.classic.ngram, labkit.classic.neural, labkit.classic.seq2seq; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("order,cutoff", [(1, 1), (2, 1), (3, 2)])
def test_counts_are_nltks(order, cutoff):
    counts = G.NgramCounts(CORPUS, order, cutoff)
    lm = G.nltk_model("mle", CORPUS, order, cutoff)
    assert counts.V == len(lm.vocab) and set(counts.vocab) == set(lm.vocab)
    for k in range(1, order + 1):
        for g, c in counts.ngrams[k].items():
            assert (lm.counts[g[0]] if k == 1 else lm.counts[list(g[:-1])][g[-1]]) == c, g
    assert counts.context_total(()) == lm.counts.unigrams.N()
    if order > 1:
        assert counts.context_total(("a",)) == lm.counts[["a"]].N()
        assert counts.followers(("a",)) == len(lm.counts[["a"]])


def test_continuation_counts_by_hand():
    counts = G.NgramCounts(CORPUS, 2)
    # bigrams of the padded text ending in "a": (<s>, a) twice, (b, a) twice, (c, a), (d, a): 4 different words before
    assert counts.continuations(("a",)) == 4
    assert counts.continuation_total(()) == len(counts.ngrams[2])  # N1+(· ·): every distinct bigram once


def test_eval_ngrams_predict_every_word_and_the_end_once():
    counts = G.NgramCounts(CORPUS, 3, cutoff=1)
    grams = G.eval_ngrams([["a", "zzz"]], counts)
    assert grams == [("<s>", "<s>", "a"), ("<s>", "a", "<UNK>"), ("a", "<UNK>", "</s>")]
    with pytest.raises(LabkitUsageError):
        G.eval_ngrams([["a"]])


def test_the_kits_smoothing_agrees_with_nltk():
    train, held = G.stories("train", 40), G.stories("val", 3)
    assert G.agrees_with_nltk_lidstone(G.addk_prob, train, held, cutoff=2, n_random=3)
    assert G.agrees_with_nltk_kneser_ney(G.kneser_ney_prob, train, held, cutoff=2, n_random=3)


def _addk_wrong_v(counts, word, context, k):
    return (counts.count(tuple(context) + (word,)) + k) / (counts.context_total(context) + k * (counts.V - 1))


def _addk_no_k_below(counts, word, context, k):
    return (counts.count(tuple(context) + (word,)) + k) / (counts.context_total(context) + counts.V)


@pytest.mark.parametrize("wrong", [_addk_wrong_v, _addk_no_k_below])
def test_the_lidstone_check_rejects_mistakes(wrong):
    assert not G.agrees_with_nltk_lidstone(wrong, n_random=4)


def _kn(raw_lower=False, plain_unigram=False, no_backoff_rule=False, followers_by_continuation=False):
    def kn(counts, word, context, d):
        context = tuple(context)
        if not context:
            if plain_unigram:
                return counts.count((word,)) / counts.context_total(())
            return counts.continuations((word,)) / counts.continuation_total(())
        lower = kn(counts, word, context[1:], d)
        if counts.context_total(context) == 0:
            if no_backoff_rule:
                return 0.0
            return lower
        if len(context) + 1 == counts.order or raw_lower:
            num, den = counts.count(context + (word,)), counts.context_total(context)
        else:
            num, den = counts.continuations(context + (word,)), counts.continuation_total(context)
        n_follow = counts.continuations(context) if followers_by_continuation else counts.followers(context)
        return max(num - d, 0) / den + d * n_follow / den * lower
    return kn


def test_the_kneser_ney_check_accepts_a_right_answer_and_rejects_mistakes():
    assert G.agrees_with_nltk_kneser_ney(_kn(), n_random=4)
    for mistake in (dict(raw_lower=True), dict(plain_unigram=True), dict(no_backoff_rule=True),
                    dict(followers_by_continuation=True)):
        assert not G.agrees_with_nltk_kneser_ney(_kn(**mistake), n_random=4), mistake


def test_kneser_ney_sums_to_one_after_a_real_word():
    counts = G.NgramCounts(G.stories("train", 30), 3, cutoff=2)
    for context in (("the", "old"), ("said", "kai"), ("zzz", "the")):  # seen, rarer, unseen history
        total = sum(G.kneser_ney_prob(counts, w, counts.lookup(context), 0.75) for w in counts.vocab)
        assert math.isclose(total, 1.0, rel_tol=1e-9), context


def test_perplexity_of_matches_nltk_and_zero_probability_is_infinite():
    train, held = G.stories("train", 30), G.stories("val", 3)
    counts = G.NgramCounts(train, 2, cutoff=2)
    grams = G.eval_ngrams(held, counts)
    lm = G.nltk_model("lidstone", train, 2, 2, gamma=0.2)
    assert math.isclose(G.perplexity_of(lambda w, h: G.addk_prob(counts, w, h, 0.2), grams), lm.perplexity(grams),
                        rel_tol=1e-9)
    assert G.perplexity_of(lambda w, h: 0.0, grams) == math.inf


def test_sampling_and_usage_errors():
    counts = G.NgramCounts(G.stories("train", 30), 3, cutoff=2)
    words = G.sample(lambda w, h: G.kneser_ney_prob(counts, w, h, 0.75), counts, 12, seed=1)
    assert words == G.sample(lambda w, h: G.kneser_ney_prob(counts, w, h, 0.75), counts, 12, seed=1)
    assert 0 < len(words) <= 12 and G.BOS not in words and G.UNK not in words
    with pytest.raises(LabkitUsageError):
        G.NgramCounts(CORPUS, order=0)
    with pytest.raises(LabkitUsageError):
        G.NgramCounts([[]], order=2)
    with pytest.raises(LabkitUsageError):
        G.stories("dev", 2)
    with pytest.raises(LabkitUsageError):
        G.nltk_model("witten-bell", CORPUS, 2)


# ------------------------------------------------------------------------------------------------ neural
def test_window_lm_check_accepts_the_kits_and_rejects_a_bag_of_words():
    import torch

    from labkit.classic import neural as N

    assert N.agrees_with_window_lm(N._classes()["WindowLM"])

    class Bag(torch.nn.Module):  # averages the window: forgets the order
        def __init__(self, V, context, dim, hidden):
            super().__init__()
            self.embed = torch.nn.Embedding(V, dim)
            self.h, self.o = torch.nn.Linear(dim, hidden), torch.nn.Linear(hidden, V)

        def forward(self, ctx):
            return self.o(torch.tanh(self.h(self.embed(ctx).mean(1))))

    class LastOnly(Bag):  # reads one position only
        def forward(self, ctx):
            return self.o(torch.tanh(self.h(self.embed(ctx[:, -1]))))

    assert not N.agrees_with_window_lm(Bag)
    assert not N.agrees_with_window_lm(LastOnly)


def test_window_data_and_a_short_training_run():
    from labkit.classic import neural as N

    train, held = G.stories("train", 30), G.stories("val", 5)
    counts = G.NgramCounts(train, 3, cutoff=2)
    data = N.window_data(counts, train, held)
    assert data.X.shape[1] == 2 and len(data.X) == len(G.eval_ngrams(train, counts))
    seen = []
    run = N.train_window(N.WindowLM(counts.V, 2, 8, 16), data, epochs=2, batch=64, on_progress=seen.append)
    assert run.losses[-1] < run.losses[0] and len(run.val_perplexity) == 2 and seen[-1].state == "done"
    near = N.nearest_words(run.model, data.words, "the", k=3)
    assert len(near) == 3 and all(w != "the" and -1 <= s <= 1 for w, s in near)


def _swapped_gates(x, h, c, cell):
    import torch

    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    f, i, g, o = gates.chunk(4, dim=-1)  # input and forget gates read in the wrong order
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _no_tanh_on_c(x, h, c, cell):
    import torch

    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * c, c


def test_lstm_check_accepts_torch_and_rejects_mistakes():
    from labkit.classic import neural as N

    assert N.agrees_with_lstm_cell(N.lstm_step)
    assert not N.agrees_with_lstm_cell(_swapped_gates)
    assert not N.agrees_with_lstm_cell(_no_tanh_on_c)


def test_char_models_train_and_sample_through_a_hand_written_step():
    from labkit.classic import neural as N

    text, val = N.char_text("train", 20), N.char_text("val", 3)
    runs = {kind: N.train_char(kind, text, val, steps=4, seq_len=16, batch=4, hidden=16) for kind in N.KINDS}
    assert all(math.isfinite(r.val_loss) for r in runs.values())
    lstm = runs["lstm"]
    by_model = N.sample_chars(lstm.model, lstm.chars, "The", 30, seed=3)
    by_step = N.sample_chars(lstm.model, lstm.chars, "The", 30, seed=3, step=N.lstm_step)
    assert by_model == by_step and len(by_model) == 30
    grads = N.input_gradients(runs["rnn"].model, runs["rnn"].chars, val[:20])
    assert len(grads) == 19 and all(g >= 0 for g in grads)
    with pytest.raises(LabkitUsageError):
        N.train_char("transformer", text, val)
    with pytest.raises(LabkitUsageError):
        N.sample_chars(lstm.model, lstm.chars, "€", 3)


# ------------------------------------------------------------------------------------------------ seq2seq
def test_dates_splits_never_share_a_date():
    from labkit.classic import seq2seq as S

    train, test = S.dates(500, "train"), S.dates(100, "test")
    assert not {x for x, _ in train} & {x for x, _ in test}
    assert S.format_date("2024-03-07") == "7 march 2024"
    assert S.dates(5, "val") == S.dates(5, "val")


def _no_mask(q, k, m, W_q, W_k, v):
    from labkit.classic import seq2seq as S

    return S.additive_attention(q, k, m | True, W_q, W_k, v)


def _masked_after_softmax(q, k, m, W_q, W_k, v):
    import torch

    w = torch.softmax(v(torch.tanh(W_q(q).unsqueeze(2) + W_k(k).unsqueeze(1))).squeeze(-1), -1)
    w = w * m.unsqueeze(1)
    return w @ k, w


def _dot_product(q, k, m, W_q, W_k, v):
    import torch

    s = (W_q(q) @ W_k(k).transpose(1, 2)).masked_fill(~m.unsqueeze(1), float("-inf"))
    w = torch.softmax(s, -1)
    return w @ k, w


def test_attention_check_accepts_the_kits_and_rejects_mistakes():
    from labkit.classic import seq2seq as S

    assert S.agrees_with_additive_attention(S.additive_attention)
    for wrong in (_no_mask, _masked_after_softmax, _dot_product):
        assert not S.agrees_with_additive_attention(wrong), wrong.__name__


def test_seq2seq_trains_decodes_and_aligns():
    from labkit.classic import seq2seq as S

    pairs = S.dates(200, "train")
    model = S.Seq2Seq(hidden=16, embed=8, attn=16)
    run = S.train(model, pairs, steps=12, batch=16, snapshot_at=(6,))
    assert run.losses[-1] < run.losses[0]
    early = S.load_snapshot(run, 6)
    assert early is not model
    srcs = [src for src, _ in pairs[:5]] + ["2024-3-7"]  # another length: its own batch
    for src, (g_text, g_logp), (b_text, b_logp) in zip(srcs, S.greedy_many(model, srcs),
                                                        S.beam_search_many(model, srcs, beam=3)):
        assert S.beam_search(model, src, beam=1) == S.greedy(model, src)  # a beam of one is greedy
        one_g, one_b = S.greedy(model, src), S.beam_search(model, src, beam=3)
        assert g_text == one_g[0] and math.isclose(g_logp, one_g[1], abs_tol=1e-4)  # batched = one at a time
        assert b_text == one_b[0] and math.isclose(b_logp, one_b[1], abs_tol=1e-4)
        assert b_logp <= 0
    inputs, outputs, W = S.alignment(model, "2024-03-07")
    assert W.shape == (len(outputs), len(inputs)) and abs(W.sum(1) - 1).max() < 1e-5
    assert 0.0 <= S.accuracy(model, pairs[:3], "beam") <= 1.0
    with pytest.raises(LabkitUsageError):
        S.greedy(model, "07/03/2024")
    with pytest.raises(LabkitUsageError):
        S.load_snapshot(run, 99)


# ------------------------------------------------------------------------------------------------ the lab
@pytest.mark.slow
def test_student_version_of_lab02_runs_end_to_end(tmp_path):
    """`labkit student build`'s version of lab 02 (every exercise `...`) runs to the end in strict mode: each later
    cell uses the kit's own version until the learner writes theirs."""
    import nbformat
    from nbclient import NotebookClient

    from labkit import grading

    reports = grading.write_student_versions(tmp_path, None, [LAB02.name])
    assert reports[0].solutions >= 3, reports[0]
    student = tmp_path / LAB02.name
    assert "### BEGIN SOLUTION" not in student.read_text()
    nb = nbformat.read(str(student), as_version=4)
    env = {"LABKIT_STRICT_EXERCISES": "1"}
    import os

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
