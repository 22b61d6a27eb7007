"""The NaN guard and the stop signals: what may end a training step early, and how.

:class:`Guard` checks, on *check steps*, that the loss (and the epoch's running
sum, which carries any NaN from the unchecked steps before) and every gradient
are finite before the optimizer step; it raises :class:`NonFiniteLossError`
naming the step and what went bad, or, with ``nan_policy="skip"``, drops the
step. A check reads values off the device (a host synchronisation on a GPU),
so by default it runs every step on the CPU and every 50 steps on CUDA, and
always on the last step of an epoch and on any step after which a checkpoint
is written: a checkpoint only ever holds verified weights.

SIGINT and SIGTERM during ``fit`` only set a flag (:meth:`Guard.listening`);
the Trainer stops at the next step boundary, saves and raises
:class:`TrainingInterrupted`. Under ``torchrun`` the NaN flag and the stop flag
are summed over the processes in one ``all_reduce`` on check steps (which
every process reaches at the same step), so every process takes the same
decision and none waits in a collective the others skipped.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from vaerepair._checks import check_count
from vaerepair.training.distributed import Distributed

__all__ = ["Guard", "NonFiniteLossError", "TrainingInterrupted"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or gradient; the message names the step and what went bad."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training at a step boundary, after ``last.pt`` was written.

    Attributes:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        where: ``"epoch E, step S"`` or ``"the end of epoch E"``.
        checkpoint: the ``last.pt`` written (``None`` without a checkpoint folder).
    """

    def __init__(self, message: str, signal_name: str = "", where: str = "", checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.signal_name, self.where, self.checkpoint = signal_name, where, checkpoint


class Guard:
    """Checks steps for non-finite values and listens for stop signals.

    Args:
        nan_policy: ``"raise"`` or ``"skip"`` (which checks every step).
        check_every: steps between checks (``None``: 1 on the CPU, 50 on CUDA).
        device: the training device.
        dist: the process group.
    """

    def __init__(self, nan_policy: str = "raise", check_every: int | None = None,
                 device: torch.device | None = None, dist: Distributed | None = None) -> None:
        if nan_policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}")
        if check_every is not None:
            check_every = check_count(check_every, "check_every", unit=" or None")
        on_cpu = device is None or device.type == "cpu"
        self.nan_policy = nan_policy
        self.check_every = 1 if nan_policy == "skip" else (check_every or (1 if on_cpu else 50))
        self.dist = dist or Distributed()
        self.free_reads = on_cpu  # a read of a CPU tensor costs no synchronisation: read each value apart
        self.received: int | None = None  # a signal this process received during fit
        self.stop_signal: int | None = None  # the signal acted on (in a group: once every process knows)
        self._found: Tensor | None = None  # the gradient check's flag and unit scale, kept between steps
        self._one: Tensor | None = None

    # ----------------------------------------------------------------- checks

    def due(self, step: int, last: bool, forced: bool) -> bool:
        """Whether step ``step`` (1-based within the epoch) is a check step."""
        if forced or last or step % self.check_every == 0:
            return True
        # one process acts on its own signal at once (and verifies the step it saves after)
        return not self.dist.enabled and self.received is not None

    def verify(self, loss: Tensor, running: Tensor, terms: dict[str, Tensor], params: list[nn.Parameter],
               model: nn.Module, gradients: bool, where: str) -> bool:
        """On a check step, after ``backward`` and before the optimizer step: whether to take the step.

        ``running`` is the epoch's running loss sum (NaN when an unchecked step
        went bad). A non-finite value raises :class:`NonFiniteLossError` under
        ``nan_policy="raise"`` and returns ``False`` under ``"skip"``.
        ``gradients=False`` leaves the gradients to an fp16 scaler (which skips
        overflowing steps itself). ``where`` names the step in messages.
        """
        found = self._gradient_flags(params) if gradients else None  # > 0 where a gradient is not finite
        if self.free_reads and not self.dist.enabled:  # no operation to gather what is read
            bad_loss = not (math.isfinite(loss.item()) and math.isfinite(running.item()))
            if not bad_loss and (found is None or found.item() == 0):
                return True
            return self._refuse(bad_loss, terms, params, model, where)
        total = running + loss.detach()  # NaN and Inf propagate through sums: one scalar says it all
        if self.dist.enabled:  # one collective: the NaN flags and the stop flag of every process
            bad_grads = (found > 0).float() if found is not None else torch.zeros_like(total)
            stop = torch.full_like(total, self.received is not None, dtype=torch.float32)
            flags = self.dist.all_sum(torch.stack([(~torch.isfinite(total)).float(), bad_grads, stop]))
            if bool(flags[2] > 0) and self.stop_signal is None:
                self.stop_signal = self.received or signal.SIGTERM
            bad_loss = bool(flags[0] > 0)
            if not bad_loss and not bool(flags[1] > 0):
                return True
        else:  # one read of the device (a synchronisation every check_every steps)
            flags = total.reshape(1) if found is None else torch.stack([total, found.to(total.device, total.dtype)])
            values = flags.tolist()
            bad_loss = not math.isfinite(values[0])
            if not bad_loss and (found is None or values[1] == 0):
                return True
        return self._refuse(bad_loss, terms, params, model, where)

    def _refuse(self, bad_loss: bool, terms: dict[str, Tensor], params: list[nn.Parameter], model: nn.Module,
                where: str) -> bool:
        """A check found a non-finite loss (``bad_loss``) or gradient: ``False`` (skip the step) under
        ``nan_policy="skip"``, else raise :class:`NonFiniteLossError` naming the terms or parameters."""
        if self._found is not None:  # the kept gradient flag goes back to 0 for the next check
            self._found.zero_()
        if self.nan_policy == "skip":
            return False
        if bad_loss:
            bad_terms = [k for k, v in terms.items() if not bool(torch.isfinite(v).all())]
            raise NonFiniteLossError(
                f"non-finite loss at {where} (or up to check_every steps before); terms that went bad: "
                f"{bad_terms or 'none of the logged terms'}. Training stopped before the update; the last good "
                "checkpoint (if any) is kept. Try a lower learning rate or check the inputs."
            )
        names = {id(p): n for n, p in model.named_parameters()}
        bad_names = [names.get(id(p), "?") for p in params
                     if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        raise NonFiniteLossError(
            f"non-finite gradient at {where} (or up to check_every steps before) in "
            f"{', '.join(bad_names[:5] or ['another process'])}{' ...' if len(bad_names) > 5 else ''}. Training "
            "stopped before the update; the last good checkpoint (if any) is kept. Try a lower learning rate, or "
            "nan_policy='skip'."
        )

    def _gradient_flags(self, params: list[nn.Parameter]) -> Tensor | None:
        """A scalar that is > 0 when any gradient holds a NaN or an Inf, else 0; ``None`` without gradients.

        One pass over every gradient in one call: the check of the gradient scaler
        (``torch._amp_foreach_non_finite_check_and_unscale_``, its scale 1; on the
        CPU it takes gradients of any floating dtypes in one list) into a flag this
        guard keeps. The kernel only ever sets the flag to 1, so it is not zeroed
        before each check but after a check that found it set (:meth:`_refuse`):
        no tensor is made or written per step for it. Where torch refuses the list
        (gradients on several devices, an older torch), a sum per gradient (NaN and
        Inf propagate through sums)."""
        # the gradients backward wrote last (the first layers') are read last, so the optimizer finds them in cache
        grads = [p.grad for p in reversed(params) if p.grad is not None]
        if not grads:
            return None
        device = grads[0].device
        if self._found is None or self._one is None or self._found.device != device:
            self._found, self._one = torch.zeros((), device=device), torch.ones((), device=device)
        found = self._found
        try:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, self._one)
        except (AttributeError, RuntimeError):  # a model across devices, an older or other torch
            found.zero_()  # the kernel may have set it before refusing a gradient
            return _summed(grads, device)
        return found

    @staticmethod
    def first_batch(loss: Any, terms: dict[str, Any], batch_size: int) -> None:
        """Check an objective's result on the first batch, before any update; explain what is wrong."""
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError(f"the objective's loss must be a scalar tensor, got {getattr(loss, 'shape', loss)!r}")
        if torch.is_grad_enabled() and not loss.requires_grad:
            raise ValueError("the objective's loss does not require grad, so backward cannot train anything: it "
                             "was detached (.detach(), .item(), a new tensor) or computed under torch.no_grad(); "
                             "return the loss tensor computed from the model's outputs")
        for name, term in terms.items():
            if not isinstance(term, Tensor) or term.shape != (batch_size,):
                raise ValueError(
                    f"the objective's term {name!r} must have shape ({batch_size},) (one value per image), "
                    f"got {getattr(term, 'shape', term)!r}"
                )
        if not bool(torch.isfinite(loss)):
            bad = [k for k, v in terms.items() if not bool(torch.isfinite(v).all())]
            raise NonFiniteLossError(
                f"the loss is {loss.item()} on the first batch, before any update; bad terms: {bad}")

    # ---------------------------------------------------------------- signals

    @contextmanager
    def listening(self) -> Iterator[None]:
        """During ``fit``: SIGINT/SIGTERM only set a flag; training stops at the next step boundary."""
        self.received = self.stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.received = signum

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def stop_requested(self) -> bool:
        """Whether to stop at this step boundary (in a group: read off the last check step's flags)."""
        if not self.dist.enabled:
            self.stop_signal = self.received
        return self.stop_signal is not None

    def interrupted(self, where: str, saved_to: str | None) -> TrainingInterrupted:
        """The exception that ends ``fit`` after a stop signal; ``saved_to`` is the ``last.pt`` written."""
        assert self.stop_signal is not None
        name = signal.Signals(self.stop_signal).name
        saved = (f"{saved_to} holds the state; continue with fit(..., resume={saved_to!r})" if saved_to
                 else "no checkpoint_dir was given, so nothing was saved")
        return TrainingInterrupted(f"{name} stopped training at {where}; {saved}", name, where, saved_to)


def _summed(grads: list[Tensor], device: torch.device) -> Tensor:
    """1 on ``device`` when any gradient holds a NaN or an Inf, else 0, from the sum of every gradient (NaN and
    Inf propagate through sums)."""
    total = torch.stack([g.sum().to(device, torch.float32) for g in grads]).sum()
    return (~torch.isfinite(total)).float()
