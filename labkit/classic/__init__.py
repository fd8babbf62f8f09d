"""Traditional language models for lab 02: what came before the transformer, trained live on the zoo's world.

- ``labkit.classic.ngram``: word n-gram counts (nltk's padding and vocabulary conventions), ``<UNK>``, perplexity,
  sampling, and the nltk references the learner's smoothing is checked against (no torch);
- ``labkit.classic.neural``: a fixed-window neural LM (Bengio et al., 2003) and character-level RNN / LSTM / GRU
  language models (``torch.nn``), trained with ``on_progress``;
- ``labkit.classic.seq2seq``: a small GRU encoder-decoder with additive attention (Bahdanau et al., 2015) on a toy
  date-formatting task, its alignment matrix, greedy and beam search.

Each submodule imports torch only inside its functions, so ``import labkit.classic.ngram`` stays light.
"""
