"""Lab 11's engine: evaluating language models.

- ``benchmark``: the zoo's multiple-choice benchmark (MMLU's shape) and its lm-evaluation-harness tasks
  (``tasks/``: ``zoo_mc``, ``zoo_mc_letters``, ``zoo_ppl``), run offline on zoo models (``run_lm_eval``);
- ``scoring``: batched log-likelihoods with lm-eval's conventions (the kit's reference scorer);
- ``perplexity``: per-token vs per-byte perplexity under three tokenizers;
- ``metrics``: exact match and F1 (SQuAD), BLEU/chrF (sacrebleu), ROUGE (rouge-score), and hand-labelled
  answers where overlap metrics disagree with a person;
- ``judge``: a zoo model as a judge (pairwise, yes/no, likelihood) and its position bias;
- ``arena``: battles, Elo, Bradley-Terry, bootstrap intervals;
- ``bias``: a job-gender association probe (BOLD/WinoBias style) against the world's own statistics.

Plain functions returning plain results; torch, transformers and lm_eval are imported inside the functions.
"""
from . import arena, benchmark, bias, judge, metrics, perplexity, scoring  # noqa: F401
