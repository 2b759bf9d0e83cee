"""The analysis' errors: a request that a population cannot answer, with the reason and what to do."""

from __future__ import annotations

__all__ = ["AnalysisError", "UnknownIndividualError", "NoCheckpointError", "NoTestSplitError"]


class AnalysisError(Exception):
    """A request the population cannot answer; the message says why and what to do."""


class UnknownIndividualError(AnalysisError, KeyError):
    """No committed individual has this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoCheckpointError(AnalysisError):
    """The individual's trained weights were not kept (``keep_checkpoints``)."""


class NoTestSplitError(AnalysisError):
    """The population's data set has no test split."""
