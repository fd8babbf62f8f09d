"""Reasoning on multi-step calculator chains (``3+5*2+4``, left to right): chain of thought vs direct answers, self-consistency, verifiers, search.

The engine of lab 12. Plain functions and plain results; torch and transformers load only when a function runs.

- ``problems``: the problems (``Problem``, ``make_problems``, ``is_heldout``), their chain-of-thought and direct
  completions, ``parse_answer``/``parse_steps``, and ``step_scores`` (a rule-based process reward);
- ``tokenizer``: the character-level tokenizer (one token per digit);
- ``train``: the training script of the zoo's ``tiny-reasoner`` (``python -m labkit.reasoning.train``);
- ``sampling``: ``complete`` (greedy or sampled chains, tokens counted);
- ``evaluate``: accuracy by mode and number of terms;
- ``vote``: ``majority_vote`` and ``self_consistency_curve`` (accuracy and tokens vs N);
- ``search``: ``process_reward``, ``outcome_scores``, ``best_of_n``, ``beam_search``;
- ``rewards``: ``correct_answer``, the GRPO reward.
"""
