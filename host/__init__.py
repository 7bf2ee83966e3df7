"""The machine a command runs on: device choice and description, tensor memory layout, files a kill never tears.

The ground under both `trainer` and `runtime` (neither may import the other);
imports nothing of ours.
"""
