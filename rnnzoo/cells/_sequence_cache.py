"""Recurrent weights formed ONCE per sequence (not per step) for the loop engine.

Cells whose recurrent matrices are functions of their parameters (expRNN's matrix
exponential, LipschitzRNN's A and W) form them in ``input_projection`` -- which every engine
calls once before the steps of a sequence -- and ``step`` reuses them. Building them per step
would recompute a matrix exponential 784 times per sMNIST batch and keep a copy per step in
the autograd graph. The fused engine builds them in ``fused_params`` instead.
"""

from __future__ import annotations

from typing import Any


class SequenceWeights:
    """Mixin: ``_form_weights()`` builds the weights; ``input_projection`` calls
    ``_begin_sequence()``; ``step`` reads ``_sequence_weights()``."""

    _seq_weights: Any = None

    def _form_weights(self) -> Any:
        raise NotImplementedError

    def _begin_sequence(self) -> None:
        self._seq_weights = self._form_weights()

    def _sequence_weights(self) -> Any:
        """The weights of the current sequence (formed now if no sequence has begun)."""
        return self._form_weights() if self._seq_weights is None else self._seq_weights

    def __getstate__(self) -> dict[str, Any]:
        # a graph-attached tensor cannot be deep-copied or pickled: drop the cache
        state = dict(self.__dict__)
        state["_seq_weights"] = None
        return state
