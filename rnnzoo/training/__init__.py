"""Training: ``train(cfg)`` runs one job end to end and returns its metrics record.

Rooms of this package, in the order a job meets them:

- ``cli``: classic rnn_zoo flags (``--model-type=lstm --hx=50``) -> Hydra overrides;
- ``config``: the validated ``trainer`` group; ``setup``: the ``Job`` built from the config
  (device, seeds, data, model, optimizer, scheduler); ``runtime``: run dir, device, seeds,
  Ctrl-C; ``optim``: optimizer, scheduler, clipping;
- ``loop``: the training loop (``Trainer``); ``tbptt``: truncated BPTT pieces;
  ``evaluate``: loss and accuracy on a split; ``progress``: the counters a checkpoint keeps;
- ``checkpoints``: payload, atomic writes, resume (the one owner of checkpoints);
- ``monitor``: TensorBoard + tqdm; ``metrics``: the ``metrics.json`` record.
"""

from rnnzoo.training.loop import Trainer, train

__all__ = ["Trainer", "train"]
