"""CIFAR-10 proxy training, latency measurement (per-block latency table, node slot) and full training.

Knows nothing of Ray or Optuna: the search calls `train_proxy`,
`measure_latency` / `predict_latency` and holds `slot.NodeSlot`; users call
`python -m trainer.train` and `python -m trainer.latency_table`.
"""
