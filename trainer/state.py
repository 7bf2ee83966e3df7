"""What a training must keep to go on later exactly where it stopped.

Full training (`trainer.train --resume`) and proxy training (a search
training restarted on another node after its node was lost) both resume from
it: the weights, the optimizer's momentum, the schedule's position, the
weight average, and the random streams (the global one drives dropout, the
loader's own one the batch order and crops).  With all of them restored, a
resumed CPU training ends with the same weights as one that never stopped.
"""
from __future__ import annotations

from typing import Any

import torch

from .loader import DeviceLoader
from .loop import Training


def rng_state(loader: DeviceLoader, device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "loader": loader.generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], loader: DeviceLoader, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    loader.generator.set_state(state["loader"].cpu() if device.type == "cpu" else state["loader"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def training_state(training: Training, epoch: int) -> dict[str, Any]:
    """The state after `epoch` finished epochs (tensors stay on their device; torch.save moves them)."""
    return {"epoch": epoch, "model": training.model.state_dict(), "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
            "ema": training.ema.state_dict() if training.ema is not None else None,
            "rng": rng_state(training.loader, training.loader.device)}


def restore_training(training: Training, state: dict[str, Any], schedule: bool = True) -> int:
    """Load `state` into a freshly made `training`; returns the epochs it had finished.

    `schedule=False` leaves the schedule to the caller (`trainer.train` may stretch it to new --epochs).
    """
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    if schedule:
        training.scheduler.load_state_dict(state["scheduler"])
    if training.ema is not None and state.get("ema") is not None:
        training.ema.load_state_dict(state["ema"])
    set_rng_state(state["rng"], training.loader, training.loader.device)
    return int(state["epoch"])
