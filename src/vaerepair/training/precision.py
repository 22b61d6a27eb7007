"""Numerical precision of the training step: autocast, the fp16 gradient scaler, ``torch.compile``.

``precision=None`` computes in the model's dtype; ``"bf16"`` runs the forward
pass under ``torch.autocast`` to bfloat16 (CUDA, and CPU); ``"fp16"`` to
float16 with a ``GradScaler`` (the loss is scaled before ``backward``, the
gradients unscaled before the step, overflowing steps skipped and the scale
adapted; its state is checkpointed). Parameters stay in their dtype, and
validation runs without autocast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["Precision", "PRECISIONS"]

PRECISIONS: dict[str | None, torch.dtype | None] = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast, loss scaling and compilation for one device.

    Args:
        precision: ``None``, ``"bf16"`` or ``"fp16"``.
        device: the training device.
        compile: ``True`` (inductor) or a ``torch.compile`` backend name; ``False`` runs eagerly.
    """

    def __init__(self, precision: str | None, device: torch.device, compile: bool | str = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.device_type = device.type
        self.dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.scaling = self.scaler.is_enabled()  # decided once, when the scaler is built
        # whether the NaN guard checks the gradients (an fp16 scaler skips overflowing steps itself)
        self.checks_gradients = not self.scaling
        self.compile = compile
        self._unscaled = False

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, the forward pass, under autocast to ``dtype``; without a precision, with autocast off."""
        if self.dtype is None and not torch.is_autocast_enabled(self.device_type):
            return fn(*args)  # already off: no context to enter and leave each step
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            return fn(*args)

    def compiled(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` compiled with the chosen backend, or ``fn`` itself."""
        if not self.compile:
            return fn
        return torch.compile(fn, backend=self.compile if isinstance(self.compile, str) else "inductor")

    def backward(self, loss: Tensor, inputs: list[torch.nn.Parameter] | None = None) -> None:
        self._unscaled = False
        if self.scaling:
            loss = self.scaler.scale(loss)
        loss.backward(inputs=inputs)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients to their true scale before they are read (gradient clipping); once per step."""
        if self.scaling and not self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled = True

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaling:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaling else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaling and state:
            self.scaler.load_state_dict(state)
