"""CIFAR-10 data, the one training loop (proxy and full training), its memory-layout choice and checkpoints.

Knows nothing of Ray, Optuna or how a network is deployed (that is `runtime`):
the search calls `train_proxy`; users call `python -m trainer.train`.
"""
