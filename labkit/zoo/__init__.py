"""labkit's offline model zoo: a synthetic-world corpus, a byte-level BPE tokenizer and tiny Llama models.

- ``corpus``: the world (``world().encyclopedia``) and generators for every kind of training item, with splits;
- ``formats``: the chat template, special tokens, tool-call syntax and the tools (the contract for agents/RAG);
- ``tokenizer``, ``train``, ``build``: the recipe behind ``labkit zoo build``;
- ``evaluate``: the held-out quality table (``labkit zoo eval``) and the tool-running chat harness;
- ``weights/``: the shipped tokenizer, tiny-base and tiny-chat (load them with ``labkit.load``).

Importing this package is light (no torch).
"""
