"""The sequence classifier: a stack of ``RecurrentLayer``s and a linear readout on the last step.

For ``num_layers`` L and D directions (D = 2 when bidirectional), ``layers`` holds L * D
``RecurrentLayer``s (``rnnzoo.layer``: input map + cell + initial state + engine), layer by
layer, the reverse direction after the forward one; ``readout`` is
``nn.Linear(D * H, num_classes)``.

- Readout and input maps are ``StableLinear`` (``nn.Linear`` whose weight gradients do not
  depend on the thread count, see ``rnnzoo.engines.stable_linear``).
- Input maps: only cells whose output is as wide as their input (``intersection`` / +RNN)
  need one: when such a layer's input width I != hidden_size, a ``nn.Linear(I, H)`` makes
  the layer's output hidden_size wide. (The rule is generic: a map is added whenever a cell
  built for (I, H) would not output H.)
- Directions: the reverse layer runs over the time-flipped sequence and flips its outputs
  back, so position t of both directions lines up; the next layer gets their concatenation
  (T, B, 2H). The readout sees [forward output at step T-1, backward output at position 0]
  (the last step each direction computed).
- Dropout (``dropout``) is applied to each layer's output sequence except the last layer's,
  as in ``torch.nn.LSTM``; nothing is dropped before the readout. Recurrent dropout
  (``recurrent_dropout``) uses ONE Bernoulli keep mask per sequence, per layer and
  direction, of shape (B, H), scaled by 1/keep, multiplied by the cell into h where h
  enters the recurrent product at every step (Gal & Ghahramani, 2016). ``sample_masks``
  draws them, in training mode only; truncated BPTT passes the same masks to every chunk.
- Dilations (``dilations``, one per layer, default all 1): layer l's recurrence reaches d_l
  steps back, s_t = cell(x_t, s_{t-d}) (Dilated RNN, Chang et al. 2017). Each direction of
  the layer runs time-to-batch (``rnnzoo.dilation``, in ``RecurrentLayer``), so every engine
  runs it unchanged; dropout and recurrent dropout are as above (one mask per sequence,
  shared by its d phases).
- Engines: each layer resolves its engine once per ``RunSpec`` (device, parameter dtype,
  autocast dtype), on the first forward for that spec or when ``resolve_engines`` is called
  at setup; ``engine_report()`` says what ran and why.

State-dict keys: ``layers.<k>.cell.*``, ``layers.<k>.input_map.*``,
``layers.<k>.init_state.<i>``, ``readout.*``. Checkpoints written before the layers existed
(``cells.<k>.*``, ``input_maps.<k>.*``, ``init_state.<k>.<i>``) load through a key remap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnzoo.cells.base import RecurrentCell, State
from rnnzoo.dilation import check_dilations
from rnnzoo.engines import RunSpec, check_engine_name
from rnnzoo.engines.stable_linear import StableLinear
from rnnzoo.errors import UserError
from rnnzoo.layer import RecurrentLayer
from rnnzoo.registry import create_cell, resolve_name

#: keys ``from_config`` reads from the model config (``conf/model/*.yaml``)
CONFIG_KEYS = (
    "cell",
    "hidden_size",
    "num_layers",
    "dropout",
    "recurrent_dropout",
    "bidirectional",
    "learn_init",
    "engine",
    "cell_kwargs",
    "dilations",
)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


class SequenceClassifier(nn.Module):
    """Stacked (optionally bidirectional) recurrent cells with a linear readout.

    Args:
        cell: registry name (or alias) of the cell, e.g. "lstm", "rnn+".
        input_size: features per step I (1 for pixel-by-pixel MNIST).
        hidden_size: width H of every layer.
        num_classes: number of classes C.
        num_layers: stacked layers L.
        dropout: dropout on the output of every layer but the last.
        recurrent_dropout: per-sequence dropout rate on h inside the recurrence.
        bidirectional: add a reverse-direction cell to every layer.
        learn_init: learn the initial state instead of starting at zero.
        engine: "auto" or an engine name from ``rnnzoo.engines`` (loop, native, fused).
        cell_kwargs: extra keyword arguments for every cell (e.g. ``forget_bias``).
        dilations: one per layer: layer l's recurrence reaches d_l steps back (Dilated RNN,
            ``rnnzoo.dilation``); None = all 1.

    Raises:
        UserError: a bad cell name, engine name, cell_kwargs or size/rate.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_classes: int = 10,
        num_layers: int = 1,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        bidirectional: bool = False,
        learn_init: bool = False,
        engine: str = "auto",
        cell_kwargs: Mapping[str, Any] | None = None,
        dilations: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_classes", num_classes),
            ("num_layers", num_layers),
        ):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            _check(ok, f"model {name} must be an integer >= 1, got {value!r}")
        for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            ok = isinstance(value, (int, float)) and 0.0 <= value < 1.0
            _check(ok, f"model {name} must be a number in [0, 1), got {value!r}")
        try:
            self.cell_name = resolve_name(cell)
        except ValueError as err:
            raise UserError(str(err)) from None
        check_engine_name(engine)

        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_classes = int(num_classes)
        self.num_layers = int(num_layers)
        self.dropout_rate = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.bidirectional = bool(bidirectional)
        self.learn_init = bool(learn_init)
        self.engine = str(engine).lower()
        self.cell_kwargs = dict(cell_kwargs or {})
        self.dilations = check_dilations(dilations, self.num_layers)
        self.num_directions = 2 if self.bidirectional else 1

        self.layers = nn.ModuleList()
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else self.num_directions * self.hidden_size
            for d in range(self.num_directions):
                input_map, rnn_cell = self._build_cell(layer_in)
                self.layers.append(
                    RecurrentLayer(
                        rnn_cell,
                        input_map,
                        self.engine,
                        self.learn_init,
                        d == 1,
                        self.dilations[layer],
                    )  # fmt: skip
                )
        self.dropout = nn.Dropout(self.dropout_rate)
        self.readout = StableLinear(self.num_directions * self.hidden_size, self.num_classes)
        self._spec: RunSpec | None = None  # the spec of the last forward / resolve_engines
        self.register_load_state_dict_pre_hook(_remap_old_keys)

    @property
    def cells(self) -> nn.ModuleList:
        """Every layer's cell, index ``layer * D + direction`` (a view, not registered)."""
        return nn.ModuleList(layer.cell for layer in self.layers)

    @property
    def input_maps(self) -> nn.ModuleList:
        """Every layer's input map, index ``layer * D + direction`` (a view)."""
        return nn.ModuleList(layer.input_map for layer in self.layers)

    @property
    def init_state(self) -> nn.ModuleList | None:
        """Every layer's learned initial state (a ParameterList each), or None (a view)."""
        if not self.learn_init:
            return None
        return nn.ModuleList(layer.init_state for layer in self.layers)

    # construction ----------------------------------------------------------------------------

    def _create(self, input_size: int) -> RecurrentCell:
        try:
            return create_cell(self.cell_name, input_size, self.hidden_size, **self.cell_kwargs)
        except (TypeError, ValueError) as err:
            raise UserError(
                f"cannot build cell {self.cell_name!r} with cell_kwargs {self.cell_kwargs}: {err}"
            ) from err

    def _build_cell(self, layer_in: int) -> tuple[nn.Module, RecurrentCell]:
        """The cell for one layer/direction and the input map in front of it (or Identity)."""
        cell = self._create(layer_in)
        if cell.output_size == self.hidden_size:
            return nn.Identity(), cell
        # e.g. +RNN outputs its input width: map the input to H first
        input_map = StableLinear(layer_in, self.hidden_size)
        cell = self._create(self.hidden_size)
        if cell.output_size != self.hidden_size:
            raise ValueError(
                f"cell {self.cell_name!r} built for ({self.hidden_size}, {self.hidden_size}) "
                f"outputs {cell.output_size} features"
            )
        return input_map, cell

    @classmethod
    def from_config(
        cls, model_cfg: Any, input_size: int, num_classes: int, seq_len: int | None = None
    ) -> SequenceClassifier:
        """Build from the ``model`` config group (a DictConfig or mapping with CONFIG_KEYS).

        A ``cell_kwargs.seq_len: null`` (IndRNN's recurrent-weight bound) is filled with the
        data's ``seq_len``, so the bound follows the view (784 pixels or 28 rows).

        Raises:
            UserError: a missing or unknown key, or any bad value.
        """
        cfg = _plain(model_cfg)
        unknown = sorted(set(cfg) - set(CONFIG_KEYS))
        _check(not unknown, f"unknown model config keys {unknown}; valid: {', '.join(CONFIG_KEYS)}")
        missing = [k for k in ("cell", "hidden_size") if cfg.get(k) is None]
        _check(not missing, f"model config needs {' and '.join(missing)}")
        kwargs = {k: v for k, v in cfg.items() if v is not None or k == "cell_kwargs"}
        cell_kwargs = dict(kwargs.get("cell_kwargs") or {})
        if "seq_len" in cell_kwargs and cell_kwargs["seq_len"] is None and seq_len is not None:
            cell_kwargs["seq_len"] = seq_len
        kwargs["cell_kwargs"] = cell_kwargs
        return cls(input_size=input_size, num_classes=num_classes, **kwargs)

    def model_args(self) -> dict[str, Any]:
        """Constructor kwargs that rebuild this model exactly (stored in checkpoints)."""
        return {
            "cell": self.cell_name,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_classes": self.num_classes,
            "num_layers": self.num_layers,
            "dropout": self.dropout_rate,
            "recurrent_dropout": self.recurrent_dropout,
            "bidirectional": self.bidirectional,
            "learn_init": self.learn_init,
            "engine": self.engine,
            "cell_kwargs": dict(self.cell_kwargs),
            # None when undilated: checkpoints from before dilations compare equal
            "dilations": list(self.dilations) if max(self.dilations) > 1 else None,
        }

    # states, masks, engines --------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> list[State]:
        """One state tuple per layer x direction (index ``layer * D + direction``), each tensor
        (B, size): learned (expanded over the batch) with ``learn_init``, zero otherwise."""
        return [layer.initial_state(batch_size) for layer in self.layers]

    def sample_masks(self, batch_size: int) -> list[Tensor | None] | None:
        """Recurrent-dropout keep masks, ONE per sequence: a (B, H) tensor of 0 and 1/keep per
        layer x direction; None in eval mode or when the rate is 0."""
        if not self.training or self.recurrent_dropout == 0.0:
            return None
        return [layer.sample_mask(batch_size, self.recurrent_dropout) for layer in self.layers]

    def run_spec(self, device: torch.device | None = None, autocast: torch.dtype | None = None):
        """The ``RunSpec`` for ``device`` (default: the parameters') and an autocast dtype."""
        ref = self.readout.weight
        device = ref.device if device is None else torch.device(device)
        return RunSpec(device, ref.dtype, autocast, self.recurrent_dropout)

    def resolve_engines(
        self, device: torch.device | None = None, autocast: torch.dtype | None = None
    ) -> dict[str, Any]:
        """Resolve every layer's engine for ``device`` and ``autocast`` (the bf16 dtype when
        the run uses autocast, else None) now, building the C++ library if needed. Call at
        setup; later forwards with the same spec reuse the result.

        Returns:
            ``engine_report()``.

        Raises:
            UserError: the configured engine cannot run this model there (one line).
        """
        self._spec = self.run_spec(device, autocast)
        for layer in self.layers:
            layer.resolve(self._spec)
        return self.engine_report()

    def engine_report(self) -> dict[str, Any]:
        """What runs: ``engine`` (one name, or "a/b" when layers differ), ``engines`` (per
        layer x direction) and ``engine_note`` (fallback reasons, how it runs; "" if none),
        for the spec of the last forward or ``resolve_engines`` (default: the parameters'
        device and dtype, no autocast)."""
        spec = self._spec
        ref = self.readout.weight
        if spec is None or (spec.device, spec.dtype) != (ref.device, ref.dtype):
            spec = self.run_spec()  # never run, or moved since
        resolutions = [layer.resolve(spec) for layer in self.layers]
        names = [r.engine for r in resolutions]
        notes = dict.fromkeys(r.note for r in resolutions if r.note)
        return {
            "engine": "/".join(dict.fromkeys(names)),
            "engines": names,
            "engine_note": "; ".join(notes),
        }

    @property
    def engine_name(self) -> str:
        """``engine_report()["engine"]``.

        Raises:
            UserError: the configured engine cannot run this model on this device.
        """
        return self.engine_report()["engine"]

    @torch.no_grad()
    def post_step_(self) -> None:
        """Call every cell's ``post_step_`` hook (e.g. IndRNN's weight clamp); run it after each
        optimizer step."""
        for cell in self.cells:
            hook = getattr(cell, "post_step_", None)
            if callable(hook):
                hook()

    # forward -----------------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        state: Sequence[State] | None = None,
        masks: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, list[State]]:
        """Run the stack over ``x`` and read out the last step.

        Args:
            x: input sequence (T, B, I).
            state: initial state per layer x direction; None -> ``initial_state(B)``.
            masks: recurrent-dropout masks per layer x direction; None -> ``sample_masks(B)``
                (so in training a plain call draws fresh per-sequence masks). Truncated BPTT
                passes the same masks and the detached state to every chunk.

        Returns:
            logits (B, C) and the final state per layer x direction.
        """
        if x.dim() != 3 or x.size(0) < 1 or x.size(2) != self.input_size:
            raise ValueError(f"expected input (T>=1, B, {self.input_size}), got {tuple(x.shape)}")
        batch = x.size(1)
        spec = self._forward_spec(x)
        n = len(self.layers)
        state = self.initial_state(batch) if state is None else list(state)
        if masks is None:
            masks = self.sample_masks(batch)
        masks = [None] * n if masks is None else list(masks)
        if len(state) != n or len(masks) != n:
            raise ValueError(
                f"expected {n} states and masks (layers x directions), "
                f"got {len(state)} and {len(masks)}"
            )

        final: list[State] = []
        inp = x  # (T, B, I) then (T, B, D*H)
        D = self.num_directions
        for layer in range(self.num_layers):
            outs = []
            is_top = layer == self.num_layers - 1  # the readout needs its last step only
            for k in range(layer * D, layer * D + D):
                ys, last = self.layers[k](inp, tuple(state[k]), masks[k], spec, is_top)
                final.append(last)
                outs.append(ys)  # (T, B, H) aligned by position; (1, B, H) on top
            inp = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (T, B, D*H)
            if layer < self.num_layers - 1:
                inp = self.dropout(inp)
        top = zip(self.layers[len(self.layers) - D :], outs, final[-D:], strict=True)
        lasts = [lay.last_output(ys, fin) for lay, ys, fin in top]
        features = lasts[0] if D == 1 else torch.cat(lasts, dim=-1)  # (B, D*H)
        return self.readout(features), final  # (B, C)

    def _forward_spec(self, x: Tensor) -> RunSpec:
        """The spec of this forward: x's device, the parameters' dtype, the autocast state."""
        dev = x.device.type
        autocast = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        self._spec = self.run_spec(x.device, autocast)
        return self._spec


def _remap_old_keys(module, state_dict, prefix, *args) -> None:
    """Load-state-dict pre-hook: rename keys of checkpoints written before ``layers``
    (``cells.<k>.``, ``input_maps.<k>.``, ``init_state.<k>.<i>``) to ``layers.<k>.*``."""
    old = {"cells.": "cell.", "input_maps.": "input_map.", "init_state.": "init_state."}
    for key in list(state_dict):
        rest = key[len(prefix) :] if key.startswith(prefix) else None
        for head, new in old.items():
            if rest is not None and rest.startswith(head):
                k, _, tail = rest[len(head) :].partition(".")
                state_dict[f"{prefix}layers.{k}.{new}{tail}"] = state_dict.pop(key)
                break


def _plain(model_cfg: Any) -> dict[str, Any]:
    """A DictConfig (resolved) or mapping as a plain dict."""
    from omegaconf import DictConfig, OmegaConf  # comes with hydra; imported only when used

    if isinstance(model_cfg, DictConfig):
        return OmegaConf.to_container(model_cfg, resolve=True)
    return dict(model_cfg)
