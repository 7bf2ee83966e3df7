"""How a network runs where it is deployed: runtimes, export and its check, latency tables and the timing protocol.

Backends (`backends`: ONNX Runtime's CPU provider by default, PyTorch eager)
behind one interface; `onnx_export` exports a network and checks its logits;
`latency` times one whole network, `latency_table` predicts one from per-block
entries (`python -m runtime.latency_table`), `block_export` and `device_timer`
carry the blocks to a device without torch; `slot` keeps a timing off the cores
a training uses; `export` writes the deployable artifact (`python -m runtime.export`).
Imports `space` (the networks), `host` and the CLI kit only: nothing of training, Ray or Optuna.
"""
