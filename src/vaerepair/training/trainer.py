"""The training loop: per epoch, per batch of a source: autocast, objective, backward, guard, step, callbacks.

Everything else is a piece of its own: batches in ``sources.py`` (``patches.py``, ``loader.py``),
validation in ``validation.py``, the NaN guard and stop signals in ``guard.py``, autocast/scaler/compile
in ``precision.py``, checkpoints and exact resume in ``resume.py``, several processes in
``distributed.py``, and progress, loggers, best checkpoint, early stopping, schedules, clipping and
weight averaging in ``callbacks/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from vaerepair._checks import as_device, check_count, check_positive
from vaerepair.corruptions import Corruption, as_corruption
from vaerepair.data import ImageDataset, NoisyImages
from vaerepair.distributions import validation
from vaerepair.objectives import ObjectiveResult, objective_hooks
from vaerepair.training.arguments import build_optimizer, check_metadata, check_model, check_seed, default_optimizer
from vaerepair.training.callbacks import Callback, EarlyStopping
from vaerepair.training.callbacks.defaults import builtin_callbacks
from vaerepair.training.distributed import Distributed, ObjectiveStep, call_objective, init_from_env
from vaerepair.training.guard import Guard, NonFiniteLossError, TrainingInterrupted
from vaerepair.training.history import History
from vaerepair.training.meter import EpochMeter
from vaerepair.training.precision import Precision
from vaerepair.training.resume import Checkpointer
from vaerepair.training.sources import Batch, BatchSource, SourceContext, TensorSource
from vaerepair.training.validation import FixedCorruption, Validator

__all__ = ["Trainer", "EarlyStopping", "NonFiniteLossError", "TrainingInterrupted", "default_optimizer"]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
Data = ImageDataset | NoisyImages | torch.Tensor


class Trainer:
    """Train a model with an objective on (corrupted) images.

    Each batch comes from a batch source (by default a :class:`TensorSource`:
    the data on the device, shuffled each epoch), corrupted on the device (the
    input) with the clean batch as the target. Validation uses one fixed
    corruption of the validation images and records the loss, its terms, and
    PSNR/SSIM of ``model.reconstruct(x_corrupted)`` against the clean images.
    A conditional model (``model.condition``) gets each batch's condition from
    ``model.condition.prepare(corrupted, mask, labels)``.

    Args:
        model: a model with ``encode``/``decode`` (or ``bottom_up``/``top_down``) and ``reconstruct``.
        objective: ``objective(model, x_input, x_target) -> ObjectiveResult``
            (its optional hooks: :class:`vaerepair.objectives.Objective`).
        corruption: applied to each training batch (a :class:`Corruption` or a spec string such as
            ``"gaussian:0.5"``); ``None`` trains a plain autoencoder.
        optimizer: an optimizer over ``model``'s parameters, or a factory
            ``params -> optimizer``; default ``Adam(lr=lr)`` (:func:`default_optimizer`).
        epochs: the number of epochs of a fit (a resumed fit ends where it was going to).
        batch_size: images per step (over all processes).
        lr: the default optimizer's learning rate.
        scheduler: a factory ``optimizer -> LR scheduler`` stepped once per epoch
            (shortcut for ``LRSchedule(factory, "epoch")``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        seed: seeds the batch order and the corruption (training and validation).
        early_stopping: an :class:`EarlyStopping` callback.
        monitor: the metric that picks ``best.pt`` (default: the early stopping's,
            else ``"val_loss"`` with validation data, else ``"train_loss"``).
        monitor_mode: ``"min"`` or ``"max"``; needed for a ``monitor`` whose
            direction is not in :data:`~vaerepair.training.callbacks.METRIC_MODES`.
        checkpoint_dir: where ``best.pt`` and ``last.pt`` go (``None``: none written).
        progress: show a tqdm progress bar.
        eval_batch_size: images per validation (and evaluation) batch.
        check_every: NaN-guard check interval (default: 1 on CPU, 50 on CUDA); a
            step after which a checkpoint is written is always checked.
        metadata: plain values stored in every checkpoint.
        checkpoint_every: also write ``last.pt`` every N optimizer steps (mid-epoch).
        nan_policy: ``"raise"`` (stop with :class:`NonFiniteLossError`) or
            ``"skip"`` (drop the step, count it as ``skipped_steps``).
        precision: ``None``, ``"bf16"`` or ``"fp16"`` (autocast; fp16 with a gradient scaler).
        compile: ``True`` or a backend name: ``torch.compile`` the step (a CPU compiles for about a minute).
        callbacks: more :class:`Callback` objects, called after the built-in ones.

    Under ``torchrun`` the same Trainer trains data-parallel through
    ``DistributedDataParallel`` (see :mod:`vaerepair.training.distributed`);
    rank 0 validates and writes the checkpoints.

    Example:
        >>> trainer = Trainer(model, Reconstruction(), GaussianNoise(0.5), epochs=5)  # doctest: +SKIP
        >>> history = trainer.fit(train, val)  # doctest: +SKIP
    """

    def __init__(
        self, model: nn.Module, objective: Callable[..., ObjectiveResult], corruption: Corruption | str | None = None,
        optimizer: torch.optim.Optimizer | OptimizerFactory | None = None, *, epochs: int = 10,
        batch_size: int = 128, lr: float = 1e-3, scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        device: str | torch.device = "auto", seed: int = 0, early_stopping: EarlyStopping | None = None,
        monitor: str | None = None, monitor_mode: str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None, progress: bool = True, eval_batch_size: int = 1000,
        check_every: int | None = None, metadata: dict[str, Any] | None = None, checkpoint_every: int | None = None,
        nan_policy: str = "raise", precision: str | None = None, compile: bool | str = False,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        check_model(model)
        corruption = as_corruption(corruption)
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            check_count(value, name)
        check_positive(lr, "lr")
        self.device = as_device(device)
        init_from_env(self.device)  # under torchrun: join the process group
        self.dist = Distributed.current()
        if self.dist.enabled and device == "auto" and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.dist.rank)))
        self.model = model.to(self.device)
        self.objective = objective_hooks(objective)
        self.corruption = corruption.to(self.device) if corruption is not None else None
        self.condition: Any = getattr(self.model, "condition", None)  # a conditional model's Condition
        self.epochs, self.batch_size, self.seed = epochs, batch_size, check_seed(seed)
        self.metadata = check_metadata(metadata)
        self.guard = Guard(nan_policy, check_every, self.device, self.dist)
        self.precision = Precision(precision, self.device, compile)
        self.checkpointer = Checkpointer(checkpoint_dir, checkpoint_every)
        # DDP (under torchrun) broadcasts rank 0's weights, then all-reduces gradients during backward
        self.step_module = self.dist.wrap(ObjectiveStep(self.model, self.objective), self.device)
        # one process, eager: the objective step without nn.Module's call and attribute lookups (no hook is set)
        eager = partial(call_objective, self.objective, self.model) if isinstance(
            self.step_module, ObjectiveStep) else self.step_module
        self.forward = self.precision.compiled(self.step_module) if compile else eager
        self.optimizer = build_optimizer(optimizer, self.model, lr)
        self.trainable = [p for group in self.optimizer.param_groups for p in group["params"] if p.requires_grad]
        # an objective that differentiates inside its loss leaves leaves (z, the images) nobody steps
        self._backward_inputs = self.trainable if self.objective.needs_grad and self.trainable else None
        self.validator = Validator(self.model, self.objective, self.condition, eval_batch_size, self.device)
        self.callbacks = builtin_callbacks(progress, scheduler, early_stopping, monitor, monitor_mode, callbacks)
        self.history = History()
        self.meter = EpochMeter(self.device)
        self.global_step = 0  # optimizer steps taken, across fit calls
        self.epoch = 0  # the epoch in progress (1-based)
        self.target_epoch = 0  # the epoch the current run ends at (a resumed run keeps its target)
        self.step_taken = False  # whether the last step updated the weights (False: skipped by the guard)
        self.stop_training = False  # a callback sets it to end fit after the epoch
        self.source: BatchSource = TensorSource(torch.zeros(1, 1, 1, 1))  # replaced by fit
        self.val_fixed: FixedCorruption | list[FixedCorruption] | None = None  # (per size) fixed corruptions
        self._checked = False  # whether the first-batch check ran

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating-point dtype, which images are cast to."""
        return self.validator.dtype

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.precision.scaler

    # --------------------------------------------------------------- training

    def fit(self, train: Data | BatchSource, val: Data | Sequence[torch.Tensor] | None = None,
            resume: str | os.PathLike[str] | None = None) -> History:
        """Train for ``epochs`` epochs; returns (and keeps in ``self.history``) the history.

        ``train``: a dataset, images ``(N, C, H, W)``, a :class:`BatchSource`; ``val`` may be photos of any sizes.
        With ``resume`` (a ``last.pt``/``best.pt`` this Trainer's settings wrote)
        every state is restored and the run continues from the step where the
        checkpoint was taken, bit-identical on the CPU to an uninterrupted run.
        SIGINT/SIGTERM stop at the next step boundary, write ``last.pt`` and
        raise :class:`TrainingInterrupted`.
        """
        source = train if isinstance(train, BatchSource) else TensorSource(train, name="train")
        # a second fit continues the random streams of the first
        streams = self.source.state_dict() if self._checked and type(source) is type(self.source) else None
        self.source = source
        self.source.setup(SourceContext(self.device, self.dtype, self.batch_size, self.seed, self.corruption,
                                        self.condition, getattr(self.model, "image_shape", None), self.dist))
        if streams is not None:
            self.source.load_state_dict({**streams, "step": 0})
        self.val_fixed = self.validator.fix(val, self.seed + 1, self.corruption, "val") if val is not None else None
        val_input = self.validator.input_quality(self.val_fixed) if self.val_fixed is not None else {}
        self.stop_training = False
        if resume is not None:
            progress = self.checkpointer.restore(self, resume)
            self._checked = True  # a later fit continues these streams, without a first-batch check
        else:
            progress = self._start()
        self.callbacks.call("on_fit_start", self)
        with self.guard.listening():
            for epoch in range(len(self.history) + 1, self.target_epoch + 1):
                self.epoch, t0 = epoch, time.perf_counter()
                if progress is None:
                    self.meter.reset()
                progress = None
                self.callbacks.call("on_epoch_start", self, self.epoch)
                self._train_epoch()
                record: dict[str, float] = {"epoch": self.epoch, **self.meter.record(
                    self.source.n_images(), self.dist, self.guard.nan_policy == "skip", epoch)}
                record.update(self._validate(val_input))
                record["lr"] = float(self.optimizer.param_groups[0]["lr"])
                record.update({k: float(v) for k, v in self.objective.hparams().items()})
                record["seconds"] = time.perf_counter() - t0
                self.history.append(record)
                self.callbacks.call("on_epoch_end", self, self.history.records[-1])
                self.checkpointer.save(self, "last.pt")
                if self.stop_training:
                    break
                if self.guard.stop_requested():
                    raise self.guard.interrupted(f"the end of epoch {self.epoch}", self.checkpointer.path("last.pt"))
        self.callbacks.call("on_fit_end", self)
        return self.history

    def _start(self) -> dict[str, Any] | None:
        """A fresh run: its target epoch, and once per Trainer the first-batch check; no mid-epoch progress."""
        self.target_epoch = len(self.history) + self.epochs
        if not self._checked:
            if self.dist.rank > 0:  # independent latent noise in each process
                torch.manual_seed(torch.initial_seed() + 1_000_003 * self.dist.rank)
            self.validator.first_batch_check(*self.source.first_batch(), self.corruption, self.seed + 4,
                                             target=self.source.first_target())
            self.optimizer.zero_grad(set_to_none=True)
            self._checked = True
        return None

    def _train_epoch(self) -> None:
        self.model.train()
        n_steps = self.source.steps_per_epoch()
        with validation(False):  # the data were checked once; no per-batch target checks
            for batch in self.source:
                # a step after which weights are written (checkpoint, callback) is always verified
                forced = self.checkpointer.due(self.global_step + 1) or self.callbacks.requires_check(self)
                result, checked = self._step(batch, forced, n_steps)
                self.callbacks.on_step_end(self, batch, result)
                if self.step_taken and self.checkpointer.due(self.global_step):
                    self.checkpointer.save(self, "last.pt", mid_epoch=True)
                if checked and self.guard.stop_requested():
                    where = f"epoch {self.epoch}, step {self.source.step}"
                    raise self.guard.interrupted(where, self.checkpointer.save(self, "last.pt", mid_epoch=True))

    def _step(self, batch: Batch, forced: bool, n_steps: int) -> tuple[ObjectiveResult, bool]:
        """One optimizer step on ``batch``; returns the objective's result and whether the step was checked."""
        step = self.source.step
        result: ObjectiveResult = self.precision.run(self.forward, batch.input, batch.target, batch.condition)
        # as a hand-written loop does: the old gradients are dropped just before backward
        self.optimizer.zero_grad(set_to_none=True)
        checked = self.guard.due(step, last=step == n_steps, forced=forced)
        self.precision.backward(result.loss if batch.weight == 1.0 else result.loss * batch.weight,
                                self._backward_inputs)
        self.step_taken = not checked or self.guard.verify(
            result.loss, self.meter.loss_sum, result.terms, self.trainable, self.model,
            self.precision.checks_gradients, f"epoch {self.epoch}, step {step}")
        if self.step_taken:
            self.callbacks.on_before_optimizer_step(self)
            self.precision.step(self.optimizer)
            self.objective.step()
            self.global_step += 1
            self.meter.add(result, batch.target.shape[0])
        else:
            self.meter.skip()
        return result, checked

    # ------------------------------------------------------------ evaluation

    def _validate(self, val_input: dict[str, float]) -> dict[str, float]:
        """The epoch's validation record (rank 0 measures, every process gets it)."""
        if self.val_fixed is None:
            return {}
        self.callbacks.call("on_validation_start", self)
        try:
            measured = {**self.validator.repair_quality(self.val_fixed), **val_input} if self.dist.is_main else {}
        finally:
            self.callbacks.call("on_validation_end", self)
        measured = self.dist.broadcast_object(measured)
        return {f"val_{k}": v for k, v in measured.items() if k != "n"}

    def evaluate(self, data: Data, corruption: Corruption | str | None = None, seed: int | None = None,
                 iwae_k: int | None = None) -> dict[str, float]:
        r"""Loss, terms and PSNR/SSIM (repaired and corrupted input vs clean) on ``data``.

        The corruption (default: the Trainer's) is drawn once with ``seed``
        (default: the Trainer's seed + 5), so the result is reproducible.
        Returns ``loss``, one key per term, ``psnr``, ``ssim``, ``psnr_input``,
        ``ssim_input`` and ``n``. With ``iwae_k`` and a model with a prior, also
        ``neg_elbo`` and ``nll_iwae`` (the ``iwae_k``-sample estimate of
        :math:`-\log p(x)`) on the clean images, in nats per image. When the
        corruption leaves some pixels untouched (erasures, masks), also
        ``psnr_missing`` and ``psnr_missing_input``: the PSNR over the touched
        pixels only (the missing region), averaged over the images that have any.
        """
        corruption = as_corruption(corruption)
        corruption = corruption.to(self.device) if corruption is not None else self.corruption
        fixed = self.validator.fix(data, self.seed + 5 if seed is None else seed, corruption, "data")
        out = {**self.validator.repair_quality(fixed), **self.validator.input_quality(fixed)}
        if iwae_k:
            out.update(self.validator.likelihood(fixed, iwae_k))
        return out

    def state_dict(self, mid_epoch: bool = False) -> dict[str, Any]:
        """Everything a checkpoint holds (see :class:`~vaerepair.training.resume.Checkpointer`)."""
        return self.checkpointer.state(self, mid_epoch)
