"""Error types of labkit.

Engine code raises these; the magics turn them into IPython ``UsageError``s so that a learner sees one clear
sentence (what was wrong and what would work) and never a raw traceback.
"""


class LabkitError(Exception):
    """Something labkit could not do; the message says why and what would work."""


class LabkitUsageError(LabkitError, ValueError):
    """Bad input from the user: an unknown name, a value out of range, an empty cell."""


class MemoryBudgetError(LabkitError, MemoryError):
    """A model load was refused before it started because it would not fit the memory budget."""


class ToolError(LabkitError):
    """A tool refused its input or was stopped; the message says what and why (it becomes the observation)."""
