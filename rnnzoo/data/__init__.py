"""Sequential image data: sources and IDX files (``sources``, ``idx``), splits and views
(``splits``), and the dataset a run trains on (``dataset``: config, ``build_data``).

    data = build_data(cfg.data, device)   # data.train / data.val / data.test: Split
    for x, y in data.train.batches(64, shuffle=True, seed=0, epoch=0):  # x (T, B, I), y (B,)
        ...
"""

from rnnzoo.data.dataset import (
    PRESET_NAMES,
    DataConfig,
    SequenceData,
    build_data,
    canonical_name,
)
from rnnzoo.data.sources import NUM_CLASSES, SOURCES, Source, default_root, resolve_root
from rnnzoo.data.splits import VIEWS, Split, make_permutation, split_indices

__all__ = [
    "NUM_CLASSES",
    "PRESET_NAMES",
    "SOURCES",
    "VIEWS",
    "DataConfig",
    "SequenceData",
    "Source",
    "Split",
    "build_data",
    "canonical_name",
    "default_root",
    "make_permutation",
    "resolve_root",
    "split_indices",
]
