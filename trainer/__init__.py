"""CIFAR-10 proxy training, latency measurement and full training.

Knows nothing of Ray or Optuna: the search calls `train_proxy` and
`measure_latency`; users call `python -m trainer.train`.
"""
