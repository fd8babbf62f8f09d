"""An arena: pairwise battles between models, Elo and Bradley-Terry ratings, bootstrap confidence intervals.

A battle is (model a, model b, score of a): 1 a won, 0 b won, 0.5 a tie. ``battles_from_correctness`` turns
per-question right/wrong results into battles: on every question, every pair of models where exactly one is
right is a decisive battle (both right or both wrong: a tie, dropped unless ``ties=True``). Chatbot Arena does the
same with people's votes between two anonymous answers.

Ratings are on the Elo scale: a 400-point gap means 10:1 odds of winning. ``bradley_terry`` is the maximum-
likelihood fit (what Chatbot Arena reports, computed there as a logistic regression); ``elo`` is the online
update, which depends on the order of the battles.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass


def battles_from_correctness(correct: dict[str, list[bool]], ties: bool = False, seed: int = 0) -> list[tuple]:
    names = list(correct)
    n = len(next(iter(correct.values())))
    out = []
    for q in range(n):
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ra, rb = correct[a][q], correct[b][q]
                if ra != rb:
                    out.append((a, b, 1.0 if ra else 0.0))
                elif ties:
                    out.append((a, b, 0.5))
    rnd = random.Random(seed)
    out = [(b, a, 1.0 - s) if rnd.random() < 0.5 else (a, b, s) for a, b, s in out]  # who is "a" is arbitrary
    rnd.shuffle(out)
    return out


def expected_score(ra: float, rb: float) -> float:
    return 1.0 / (1.0 + 10 ** ((rb - ra) / 400))


def elo_update(ra: float, rb: float, score_a: float, k: float = 16) -> tuple[float, float]:
    e = expected_score(ra, rb)
    return ra + k * (score_a - e), rb - k * (score_a - e)


def elo(battles, k: float = 16, start: float = 1000.0, update=elo_update) -> dict[str, float]:
    r: dict[str, float] = {}
    for a, b, s in battles:
        ra, rb = r.setdefault(a, start), r.setdefault(b, start)
        r[a], r[b] = update(ra, rb, s, k)
    return r


def bradley_terry(battles, iters: int = 500, tol: float = 1e-10) -> dict[str, float]:
    """Maximum-likelihood Bradley-Terry strengths by Hunter's MM algorithm (ties count half a win each way),
    on the Elo scale (400 log10 units), mean 1000."""
    names = sorted({m for a, b, _ in battles for m in (a, b)})
    wins = {m: 0.0 for m in names}
    games: dict = {}
    for a, b, s in battles:
        wins[a] += s
        wins[b] += 1 - s
        key = tuple(sorted((a, b)))
        games[key] = games.get(key, 0) + 1
    p = {m: 1.0 for m in names}
    for _ in range(iters):
        new = {}
        for m in names:
            den = sum(n / (p[m] + p[o]) for (x, y), n in games.items() if m in (x, y) for o in [(y if x == m else x)])
            new[m] = max(wins[m], 1e-9) / den if den else p[m]
        g = math.exp(sum(math.log(v) for v in new.values()) / len(new))
        new = {m: v / g for m, v in new.items()}
        done = max(abs(math.log(new[m] / p[m])) for m in names) < tol
        p = new
        if done:
            break
    r = {m: 400 * math.log10(p[m]) for m in names}
    mean = sum(r.values()) / len(r)
    return {m: v - mean + 1000 for m, v in r.items()}


def reference_bt(battles) -> dict[str, float]:
    """The same fit as Chatbot Arena computes it: an unpenalised logistic regression (scikit-learn) on +1/-1
    model indicators; ratings on the Elo scale, mean 1000. Ties are two half-battles (one each way)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    names = sorted({m for a, b, _ in battles for m in (a, b)})
    idx = {m: i for i, m in enumerate(names)}
    X, y, w = [], [], []
    for a, b, s in battles:
        row = np.zeros(len(names))
        row[idx[a]], row[idx[b]] = 1.0, -1.0
        for outcome, weight in ((1, s), (0, 1 - s)):
            if weight > 0:
                X.append(row)
                y.append(outcome)
                w.append(weight)
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10000)
    lr.fit(np.array(X), np.array(y), sample_weight=np.array(w))
    r = lr.coef_[0] * 400 / math.log(10)
    r = r - r.mean() + 1000
    return {m: float(r[idx[m]]) for m in names}


def random_battles(n_models: int = 4, n: int = 300, seed: int = 0) -> list[tuple]:
    """Battles among models of random true strengths (for checking a fit on data a learner did not see)."""
    rnd = random.Random(seed)
    true = {f"m{i}": rnd.gauss(0, 150) for i in range(n_models)}
    names = list(true)
    out = []
    for _ in range(n):
        a, b = rnd.sample(names, 2)
        pa = expected_score(true[a], true[b])
        u = rnd.random()
        s = 0.5 if rnd.random() < 0.1 else (1.0 if u < pa else 0.0)
        out.append((a, b, s))
    return out


def agrees_with_reference_bt(fit, tol: float = 1.0) -> bool:
    """A learner's Bradley-Terry fit against scikit-learn's logistic regression on random battles (ratings within
    ``tol`` Elo points, after both are centred at 1000)."""
    for seed in (1, 2, 3):
        battles = random_battles(3 + seed, 200 + 100 * seed, seed)
        mine, ref = fit(battles), reference_bt(battles)
        mean = sum(mine.values()) / len(mine)
        if set(mine) != set(ref) or any(abs(mine[m] - mean + 1000 - ref[m]) > tol for m in ref):
            return False
    return True


@dataclass
class Rated:
    name: str
    rating: float
    low: float
    high: float


def bootstrap(battles, fit=bradley_terry, rounds: int = 200, seed: int = 0, level: float = 0.95) -> list[Rated]:
    """Ratings with percentile bootstrap intervals (battles resampled with replacement), best first."""
    rnd = random.Random(seed)
    point = fit(battles)
    samples = {m: [] for m in point}
    for _ in range(rounds):
        res = fit([battles[rnd.randrange(len(battles))] for _ in battles])
        for m in point:
            samples[m].append(res.get(m, float("nan")))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out = []
    for m, v in point.items():
        s = sorted(x for x in samples[m] if not math.isnan(x))
        out.append(Rated(m, v, s[int(lo_q * (len(s) - 1))], s[int(round(hi_q * (len(s) - 1)))]))
    return sorted(out, key=lambda r: -r.rating)


def elo_order_spread(battles, k: float = 16, orders: int = 50, seed: int = 0, update=elo_update) -> dict:
    """Online Elo over ``orders`` shuffles of the same battles: the rating of each model depends on the order."""
    rnd = random.Random(seed)
    res: dict = {}
    for _ in range(orders):
        b = list(battles)
        rnd.shuffle(b)
        for m, v in elo(b, k, update=update).items():
            res.setdefault(m, []).append(v)
    return {m: (min(v), max(v)) for m, v in res.items()}


def elo_update_ok(update) -> bool:
    """Checks a learner's Elo update against what any right one does: the points one side gains the other loses
    (on random ratings and results); equal ratings and a win gain k/2; and Wikipedia's worked example (a 1613
    player, K = 32, five games, 2.5 points where 2.88 were expected) ends near 1601."""
    rnd = random.Random(7)
    for _ in range(200):
        ra, rb, k = rnd.uniform(600, 2400), rnd.uniform(600, 2400), rnd.choice([8, 16, 32])
        s = rnd.choice([0.0, 0.5, 1.0])
        na, nb = update(ra, rb, s, k)
        if abs((na - ra) + (nb - rb)) > 1e-9 or (s == 1.0 and na < ra) or (s == 0.0 and na > ra):
            return False
    na, nb = update(1500.0, 1500.0, 1.0, 20)
    if abs(na - 1510) > 1e-9 or abs(nb - 1490) > 1e-9:
        return False
    games = [(1609, 0.0), (1477, 0.5), (1388, 1.0), (1586, 1.0), (1720, 0.0)]
    delta = sum(update(1613.0, rb, s, 32)[0] - 1613.0 for rb, s in games)
    return abs(1613 + delta - 1601) < 1.0


def paired_bootstrap(correct_a: list[bool], correct_b: list[bool], rounds: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Accuracy difference a - b on the same questions, with a percentile bootstrap interval (questions resampled
    together, so both models face the same draw)."""
    rnd = random.Random(seed)
    n = len(correct_a)
    diff = (sum(correct_a) - sum(correct_b)) / n
    ds = []
    for _ in range(rounds):
        idx = [rnd.randrange(n) for _ in range(n)]
        ds.append(sum(correct_a[i] - correct_b[i] for i in idx) / n)
    ds.sort()
    return diff, ds[int((1 - level) / 2 * (rounds - 1))], ds[int(round((1 + level) / 2 * (rounds - 1)))]
