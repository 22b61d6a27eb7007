"""A small Trainer: batches by index from a device tensor, corrupts on the device, validates
on a fixed corruption, records history, keeps best/last checkpoints, shows progress."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from vaerepair._checks import as_device, check_positive, shape_str
from vaerepair.corruptions import Corruption
from vaerepair.data import ImageDataset
from vaerepair.distributions import validation
from vaerepair.metrics import psnr, ssim
from vaerepair.models.latent import LatentModel
from vaerepair.objectives import ObjectiveResult, likelihood_metrics
from vaerepair.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaerepair.training.distributed import Distributed, init_from_env
from vaerepair.training.history import History
from vaerepair.training.state import capture_rng, restore_rng, spec_differences, state_mismatch

__all__ = ["Trainer", "EarlyStopping", "NonFiniteLossError", "TrainingInterrupted"]

_POSTFIX_EVERY = 10  # steps between progress-bar loss updates (each one reads the loss off the device)
_PRECISIONS: dict[str | None, torch.dtype | None] = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or gradient; the message names the step and what went bad."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training at a step boundary, after ``last.pt`` was written."""


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is a History key (``"val_loss"``, ``"val_psnr"``, ...);
    ``mode`` is ``"min"`` or ``"max"``.
    """

    monitor: str = "val_loss"
    patience: int = 5
    mode: str = "min"
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience!r}")

    def improved(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


class _Fixed(NamedTuple):
    """One fixed corruption of a split: clean and corrupted images ``(N, C, H, W)`` and the mask."""

    clean: Tensor
    corrupted: Tensor
    mask: Tensor

    def partial_mask(self) -> bool:
        """Whether the corruption left some pixels untouched (erasures, masks): then the
        missing-region PSNR means something."""
        return bool(self.mask.any()) and not bool(self.mask.all())

    def n_with_missing(self) -> int:
        return int(self.mask.flatten(1).any(dim=1).sum())


def _as_images(data: ImageDataset | Tensor, name: str) -> Tensor:
    """The images of ``data`` as ``(N, C, H, W)``, uint8 or float in [0, 1]."""
    if isinstance(data, ImageDataset):
        return data.images
    if not isinstance(data, Tensor):
        raise TypeError(f"{name} must be an ImageDataset or a tensor (N, C, H, W), got {type(data).__name__}")
    if data.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {shape_str(data.shape)}")
    if data.dtype != torch.uint8:
        if not data.is_floating_point():
            raise TypeError(f"{name} must be uint8 (0..255) or float in [0, 1], got {data.dtype}")
        lo, hi = float(data.min()), float(data.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must hold values in [0, 1], got [{lo:.4g}, {hi:.4g}]; scale uint8 images with x / 255"
            )
    return data


def _to_unit_float(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    return x.to(dtype).div_(255.0) if x.dtype == torch.uint8 else x.to(dtype)


class Trainer:
    """Train a model with an objective on (corrupted) images.

    The training data is moved to the device once and batched by index; each
    batch is corrupted on the device (the input) and the clean batch is the
    target. Validation uses one fixed corruption of the validation images (the
    same noise every epoch) and records the loss, its terms, and PSNR/SSIM of
    the repairs ``model.reconstruct(x_corrupted)`` against the clean images.
    For a conditional model (``model.condition`` set) each batch's condition is
    built by ``model.condition.prepare(corrupted, mask, labels)``; label
    conditions need an :class:`~vaerepair.data.ImageDataset` with labels.

    Args:
        model: a model with ``encode``/``decode``/``reconstruct`` (see
            :class:`vaerepair.models.LatentVariableModel`).
        objective: ``objective(model, x_input, x_target) -> ObjectiveResult``.
        corruption: applied to each training batch; ``None`` trains a plain
            autoencoder.
        optimizer: an optimizer over ``model``'s parameters, or a factory
            ``params -> optimizer``; default ``Adam(lr=lr)``.
        epochs: the maximum number of epochs.
        batch_size: images per step.
        lr: the default optimizer's learning rate.
        scheduler: a factory ``optimizer -> LR scheduler``, stepped once per epoch.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        seed: seeds the batch order and the corruption (training and validation).
        early_stopping: an :class:`EarlyStopping`; ``None`` trains all epochs.
        monitor: the metric that picks the best checkpoint (default:
            ``early_stopping.monitor``, else ``"val_loss"`` with validation data,
            else ``"train_loss"``).
        checkpoint_dir: where ``best.pt`` and ``last.pt`` go (``None``: none written).
        progress: show a tqdm progress bar.
        eval_batch_size: batch size for validation and evaluation.
        check_every: check the loss for NaN/Inf every N steps (default: every
            step on CPU, every 50 on CUDA, where a check costs a synchronisation).
        metadata: plain values stored in every checkpoint (the CLI records the
            dataset and corruption there).
        precision: ``None`` (the model's dtype), ``"bf16"`` (autocast to
            bfloat16: CUDA, and CPU) or ``"fp16"`` (autocast to float16 with a
            gradient scaler, whose state is checkpointed). Parameters stay in
            their dtype; validation runs without autocast.
        compile: ``True`` compiles the training step's objective call with
            ``torch.compile`` (a string picks the backend, e.g. ``"aot_eager"``).
            Exact resume is guaranteed in eager mode only.
        checkpoint_every: also write ``last.pt`` every N optimizer steps
            (mid-epoch), so that :meth:`fit` with ``resume=`` loses at most N steps.
        nan_policy: ``"raise"`` (stop with :class:`NonFiniteLossError` naming the
            step and the bad terms or parameters; the last good checkpoint stays)
            or ``"skip"`` (drop that step's update and count it in the history as
            ``skipped_steps``; checks every step).

    Under ``torchrun --nproc_per_node=N`` (or any launcher that sets
    ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``/``MASTER_PORT``) the same Trainer
    trains data-parallel with ``torch.distributed`` (gloo on CPU, NCCL on
    GPUs, one GPU per process): every process corrupts the same global batch
    of ``batch_size`` images and trains on its share, the gradients are summed
    in one ``all_reduce`` per step, rank 0 validates (its record is broadcast)
    and writes the checkpoints, and ``resume=`` works as in one process.
    Each process draws its own latent noise.

    Example:
        >>> trainer = Trainer(model, Reconstruction(), GaussianNoise(0.5), epochs=5)  # doctest: +SKIP
        >>> history = trainer.fit(train, val)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Callable[..., ObjectiveResult],
        corruption: Corruption | None = None,
        optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
        *,
        epochs: int = 10,
        batch_size: int = 128,
        lr: float = 1e-3,
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
        early_stopping: EarlyStopping | None = None,
        monitor: str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        eval_batch_size: int = 1000,
        check_every: int | None = None,
        metadata: dict[str, Any] | None = None,
        checkpoint_every: int | None = None,
        nan_policy: str = "raise",
        precision: str | None = None,
        compile: bool | str = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(objective):
            raise TypeError(f"objective must be callable as objective(model, x_input, x_target), got {objective!r}")
        if corruption is not None and not isinstance(corruption, Corruption):
            raise TypeError(f"corruption must be a vaerepair Corruption or None, got {corruption!r}")
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        check_positive(lr, "lr")
        if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(
                checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be an integer >= 1 or None, got {checkpoint_every!r}")
        if nan_policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {precision!r}")
        self.device = as_device(device)
        init_from_env(self.device)  # under torchrun: join the process group
        self.dist = Distributed.current()
        if self.dist.enabled and device == "auto" and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.dist.rank)))
        self.model = model.to(self.device)
        self.dist.broadcast_parameters(self.model)  # every process starts from rank 0's weights
        self.objective = objective
        self.corruption: Corruption | None = corruption.to(self.device) if corruption is not None else None
        self.optimizer: torch.optim.Optimizer
        if optimizer is None:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        elif isinstance(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer
        else:
            self.optimizer = optimizer(self.model.parameters())
        self.scheduler = scheduler(self.optimizer) if scheduler is not None else None
        self._trainable = [p for group in self.optimizer.param_groups for p in group["params"] if p.requires_grad]
        # An objective that differentiates inside its loss (needs_grad, e.g. with respect to the input images)
        # leaves leaves whose gradients nobody steps: backward(inputs=...) skips them. Otherwise the plain
        # backward is cheaper.
        self._backward_inputs = self._trainable if getattr(objective, "needs_grad", False) and self._trainable else None
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = int(seed)
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress
        self.eval_batch_size = eval_batch_size
        self.check_every = 1 if nan_policy == "skip" else (check_every or (1 if self.device.type == "cpu" else 50))
        self.metadata = dict(metadata or {})
        self.checkpoint_every = checkpoint_every
        self.nan_policy = nan_policy
        self.precision = precision
        self._autocast_dtype = _PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self._objective_call: Callable[..., ObjectiveResult] = self._run_objective
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self._objective_call = torch.compile(self._run_objective, backend=backend)
        self.global_step = 0  # optimizer steps taken, across fit calls
        self._since_best = 0  # epochs since the monitored metric last improved
        self._target_epoch = 0  # the epoch the current run ends at (a resumed run keeps its target)
        self._signal_received: int | None = None  # set by the SIGINT/SIGTERM handler during fit
        self._stop_signal: int | None = None  # the signal acted on (across processes: once all know of it)
        self.condition: Any = getattr(self.model, "condition", None)  # a conditional model's Condition
        self.history = History()
        self._checked = False
        self._best: float | None = None  # the best monitored value so far, across fit calls
        # Batch order and training corruption: one stream each, continued by every fit call.
        self._batch_gen, self._corrupt_gen = self._generator(self.seed + 2), self._generator(self.seed + 3)
        floats = [p.dtype for p in self.model.parameters() if p.is_floating_point()]
        self.dtype = floats[0] if floats else torch.get_default_dtype()  # images are cast to the model's dtype

    # ------------------------------------------------------------------ data

    def _prepare(self, data: ImageDataset | Tensor, name: str) -> Tensor:
        """The images of ``data`` on the device, checked against the model's image shape."""
        images = _as_images(data, name)
        expected = getattr(self.model, "image_shape", None)
        if expected is not None and tuple(images.shape[1:]) != tuple(expected):
            c, h, w = expected
            raise ValueError(
                f"{name} has images of shape {shape_str(images.shape[1:])} but the model takes ({c}, {h}, {w}); "
                f"build the model with image_shape={tuple(images.shape[1:])}"
            )
        if len(images) == 0:
            raise ValueError(f"{name} is empty")
        return images.to(self.device)

    def _labels(self, data: ImageDataset | Tensor, name: str) -> Tensor | None:
        """The labels on the device when the model's condition needs them, else ``None``."""
        if not getattr(self.condition, "needs_labels", False):
            return None
        if not isinstance(data, ImageDataset):
            raise TypeError(
                f"this model is conditioned on labels, so {name} must be an ImageDataset with labels "
                f"(vaerepair.load gives them; or ImageDataset(images, labels)), got a {type(data).__name__}"
            )
        if len(data.labels) and int(data.labels.min()) < 0:
            raise ValueError(f"{name} has no labels (they are -1); a label-conditional model needs them")
        return data.labels.to(self.device)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def _corrupt(
        self, x: Tensor, generator: torch.Generator, corruption: Corruption | None = None, with_mask: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """The corrupted batch and its mask (``True`` where touched; all ``False`` without a corruption).

        With ``with_mask=False`` the mask is ``None`` (the unconditional training step skips it).
        """
        corruption = corruption or self.corruption
        if corruption is None:
            return x, torch.zeros_like(x, dtype=torch.bool) if with_mask else None
        if not with_mask:
            return corruption(x, generator=generator), None
        return tuple(corruption(x, generator=generator, return_mask=True))  # type: ignore[return-value]

    def _fixed_corruption(self, images: Tensor, seed: int, corruption: Corruption | None = None) -> _Fixed:
        """Clean float images and one fixed corruption of them (same for the same seed)."""
        generator = self._generator(seed)
        clean = _to_unit_float(images, self.dtype)
        step = self.eval_batch_size
        parts = [self._corrupt(clean[i : i + step], generator, corruption) for i in range(0, len(clean), step)]
        return _Fixed(clean, torch.cat([p[0] for p in parts]), torch.cat([cast(Tensor, p[1]) for p in parts]))

    def _run_objective(self, x_in: Tensor, x: Tensor, condition: Tensor | None) -> ObjectiveResult:
        """The objective on one batch; a conditional model also gets its condition."""
        if condition is None:
            return cast(ObjectiveResult, self.objective(self.model, x_in, x))
        return cast(ObjectiveResult, self.objective(self.model, x_in, x, condition))

    def _condition_of(self, x_in: Tensor, mask: Tensor | None, labels: Tensor | None) -> Tensor | None:
        return self.condition.prepare(x_in, mask, labels) if self.condition is not None else None

    # --------------------------------------------------------------- training

    def fit(
        self,
        train: ImageDataset | Tensor,
        val: ImageDataset | Tensor | None = None,
        resume: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for up to ``epochs`` epochs; returns (and keeps in ``self.history``) the history.

        With ``resume`` (a ``last.pt`` or ``best.pt`` this Trainer's settings wrote),
        the model, optimizer, scheduler, objective state (a beta schedule's
        clock), counters, history and every random-number state are restored,
        and the run continues to the epoch it was going to end at, from the step
        where the checkpoint was taken: the result is bit-identical on CPU to a
        run that was never interrupted. SIGINT and SIGTERM during ``fit`` stop
        at the next step boundary, write ``last.pt`` and raise
        :class:`TrainingInterrupted`.
        """
        train_images, train_labels = self._prepare(train, "train"), self._labels(train, "train")
        val_fixed = self._fixed_corruption(self._prepare(val, "val"), seed=self.seed + 1) if val is not None else None
        val_labels = self._labels(val, "val") if val is not None else None
        val_input = self._input_quality(val_fixed) if val_fixed is not None else {}
        monitor = self.monitor or (
            self.early_stopping.monitor if self.early_stopping else ("val_loss" if val is not None else "train_loss")
        )
        higher_is_better = "psnr" in monitor or "ssim" in monitor
        mode = self.early_stopping.mode if self.early_stopping else ("max" if higher_is_better else "min")
        stopper = self.early_stopping or EarlyStopping(monitor=monitor, mode=mode, patience=self.epochs + 1)
        progress: dict[str, Any] | None = None
        if resume is not None:
            progress = self._resume(resume)
        else:
            self._target_epoch = len(self.history) + self.epochs
            if not self._checked and self.dist.rank > 0:  # independent latent noise in each process
                torch.manual_seed(torch.initial_seed() + 1_000_003 * self.dist.rank)
            if not self._checked:
                first = slice(0, min(len(train_images), self.batch_size))
                self._sanity_check(train_images[first], train_labels[first] if train_labels is not None else None)
                self._checked = True

        with self._stop_on_signals():
            for epoch in range(len(self.history) + 1, self._target_epoch + 1):
                t0 = time.perf_counter()
                record: dict[str, float] = {"epoch": epoch}
                record.update(self._train_epoch(train_images, train_labels, epoch, progress))
                progress = None
                if val_fixed is not None:
                    measured = {**self._evaluate_fixed(val_fixed, val_labels), **val_input} if self.dist.is_main else {}
                    measured = self.dist.broadcast_object(measured)
                    record.update({f"val_{k}": v for k, v in measured.items() if k != "n"})
                record["lr"] = float(self.optimizer.param_groups[0]["lr"])
                hparams = getattr(self.objective, "hparams", None)
                if hparams is not None:
                    record.update({k: float(v) for k, v in hparams().items()})
                if self.scheduler is not None:
                    self.scheduler.step()
                record["seconds"] = time.perf_counter() - t0
                self.history.append(record)
                if monitor not in record:
                    raise KeyError(f"monitor {monitor!r} is not a recorded metric; known: {', '.join(record)}")
                if stopper.improved(record[monitor], self._best):
                    self._best, self._since_best = record[monitor], 0
                    self.history.best_epoch = epoch
                    self._save("best.pt")
                else:
                    self._since_best += 1
                self._save("last.pt")
                if self.early_stopping is not None and self._since_best >= self.early_stopping.patience:
                    self.history.stopped_early = True
                    break
                self._raise_if_stopped(epoch, None)
        return self.history

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """During fit, SIGINT/SIGTERM only set a flag: training stops at the next step boundary."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._signal_received = self._stop_signal = None

        def handler(signum: int, frame: Any) -> None:
            self._signal_received = signum

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _raise_if_stopped(self, epoch: int, step: int | None) -> None:
        if not self.dist.enabled:  # one process acts on its signal at once; a group once all have heard
            self._stop_signal = self._signal_received
        if self._stop_signal is None:
            return
        name = signal.Signals(self._stop_signal).name
        where = f"epoch {epoch}, step {step}" if step is not None else f"the end of epoch {epoch}"
        saved = (f"{self.checkpoint_dir / 'last.pt'} holds the state; continue with "
                 f"fit(..., resume={str(self.checkpoint_dir / 'last.pt')!r})") if self.checkpoint_dir else (
                 "no checkpoint_dir was given, so nothing was saved")
        raise TrainingInterrupted(f"{name} stopped training at {where}; {saved}")

    def _sanity_check(self, x_clean: Tensor, labels: Tensor | None) -> None:
        """Run the objective once on the first batch and explain what goes wrong."""
        x = _to_unit_float(x_clean, self.dtype)
        x_in, mask = self._corrupt(x, self._generator(self.seed + 4))
        try:
            result = self._run_objective(x_in, x, self._condition_of(x_in, mask, labels))
        except Exception as err:
            raise RuntimeError(
                f"the objective failed on a first batch of shape {shape_str(x.shape)} "
                f"({type(err).__name__}: {err})"
            ) from err
        if not isinstance(result, ObjectiveResult) and not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(f"the objective must return an ObjectiveResult(loss, terms), got {type(result).__name__}")
        loss, terms = result
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError(f"the objective's loss must be a scalar tensor, got {getattr(loss, 'shape', loss)!r}")
        for name, term in terms.items():
            if not isinstance(term, Tensor) or term.shape != (len(x),):
                raise ValueError(
                    f"the objective's term {name!r} must have shape ({len(x)},) (one value per image), "
                    f"got {getattr(term, 'shape', term)!r}"
                )
        if not bool(torch.isfinite(loss)):
            bad = [k for k, v in terms.items() if not bool(torch.isfinite(v).all())]
            raise NonFiniteLossError(
                f"the loss is {loss.item()} on the first batch, before any update; bad terms: {bad}"
            )
        self.optimizer.zero_grad(set_to_none=True)

    def _train_epoch(
        self, images: Tensor, labels: Tensor | None, epoch: int, progress: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        """One epoch, or the rest of one when ``progress`` (from a mid-epoch checkpoint) says where it stopped."""
        self.model.train()
        n = len(images)
        n_steps = math.ceil(n / self.batch_size)
        term_sums: dict[str, Tensor | float] = {}
        if progress is None:
            epoch_start = self._batch_gen.get_state()
            start, loss_sum, skipped = 0, torch.zeros((), device=self.device), 0
        else:  # regenerate this epoch's order from the generator's state at its start
            epoch_start = progress["batch_gen_at_epoch_start"]
            self._batch_gen.set_state(epoch_start.cpu())
            start, loss_sum = progress["step"], progress["loss_sum"].to(self.device)
            term_sums.update({k: v.to(self.device) for k, v in progress["term_sums"].items()})
            skipped = progress["skipped"]
        order = torch.randperm(n, generator=self._batch_gen, device=self.device)
        step_objective = getattr(self.objective, "step", None)  # e.g. a beta schedule's clock
        shown = self.progress and self.dist.is_main
        bar = tqdm(total=n_steps, initial=start, desc=f"epoch {epoch}", disable=not shown, leave=False,
                   dynamic_ncols=True)
        with validation(False), bar:
            for step in range(start, n_steps):
                steps_before = self.global_step
                index = order[step * self.batch_size : (step + 1) * self.batch_size]
                x = _to_unit_float(images[index], self.dtype)
                # every process corrupts the whole global batch (the same random stream), then takes its share
                x_in, mask = self._corrupt(x, self._corrupt_gen, with_mask=self.condition is not None)
                batch_labels = labels[index] if labels is not None else None
                weight = 1.0
                if self.dist.enabled:
                    part, n_global = self.dist.shard(len(x)), len(x)
                    x, x_in = x[part], x_in[part]
                    mask = mask[part] if mask is not None else None
                    batch_labels = batch_labels[part] if batch_labels is not None else None
                    weight = len(x) / n_global  # the all-reduced sum of weighted means is the global mean
                condition = self._condition_of(x_in, mask, batch_labels)
                with torch.autocast(self.device.type, dtype=self._autocast_dtype,
                                    enabled=self._autocast_dtype is not None):
                    result = self._objective_call(x_in, x, condition)
                check = (step + 1) % self.check_every == 0 or step + 1 == n_steps
                if self.dist.enabled:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(result.loss * weight).backward(inputs=self._backward_inputs)
                    finite = self._sync_step(result.loss, read=check)
                else:
                    finite = self.nan_policy == "raise" or bool(torch.isfinite(result.loss))
                if self.nan_policy == "skip" and not finite:
                    skipped += 1
                    self.optimizer.zero_grad(set_to_none=True)
                else:
                    if check and self.nan_policy == "raise":
                        # Before the update: a bad loss never reaches the weights when checked every step.
                        bad = loss_sum + result.loss.detach() if finite else torch.tensor(float("nan"))
                        self._check_finite(bad, result.terms, epoch, step + 1)
                    if not self.dist.enabled:
                        self.optimizer.zero_grad(set_to_none=True)
                        self.scaler.scale(result.loss).backward(inputs=self._backward_inputs)
                    # with fp16 the scaler itself skips steps whose (scaled) gradients overflow
                    if check and not self.scaler.is_enabled() and not self._gradients_finite(epoch, step + 1):
                        skipped += 1
                        self.optimizer.zero_grad(set_to_none=True)
                    else:
                        loss_sum += result.loss.detach().float() * len(x)
                        for k, v in result.terms.items():
                            term_sums[k] = term_sums.get(k, 0.0) + v.detach().float().sum()
                        self.scaler.step(self.optimizer)
                        self.scaler.update()
                        if step_objective is not None:
                            step_objective()
                        self.global_step += 1
                if not bar.disable and ((step + 1) % _POSTFIX_EVERY == 0 or step + 1 == n_steps):
                    seen = min((step + 1) * self.batch_size, n)
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4g}", refresh=False)
                bar.update(1)
                periodic = (self.checkpoint_every is not None and self.global_step > steps_before
                            and self.global_step % self.checkpoint_every == 0)
                if not self.dist.enabled:
                    self._stop_signal = self._signal_received
                if periodic or self._stop_signal is not None:
                    self._save("last.pt", {"epoch": epoch, "step": step + 1, "batch_gen_at_epoch_start": epoch_start,
                                           "loss_sum": loss_sum.detach().clone(), "skipped": skipped,
                                           "term_sums": {k: torch.as_tensor(v).detach().clone()
                                                         for k, v in term_sums.items()}})
                    self._raise_if_stopped(epoch, step + 1)
        if self.dist.enabled:  # each process summed its shares: add them up
            names = sorted(term_sums)
            totals = self.dist.all_sum(torch.stack([loss_sum.float(), *(torch.as_tensor(
                term_sums[k], device=self.device).float() for k in names)]))
            loss_sum, term_sums = totals[0], dict(zip(names, totals[1:], strict=True))
        record = {"train_loss": loss_sum.item() / n}
        record.update({f"train_{k}": float(v) / n for k, v in term_sums.items()})
        if self.nan_policy == "skip":
            record["skipped_steps"] = float(skipped)
        return record

    def _sync_step(self, loss: Tensor, read: bool) -> bool:
        """Sum gradients over the processes with two flags (a non-finite loss, a stop signal) riding along.

        Only when ``read`` (a check step; reading costs a host synchronisation on a GPU) are the flags
        looked at: returns whether every process's loss was finite, and adopts a stop signal any process
        received. Without ``read`` it returns ``True``.
        """
        nonfinite = (~torch.isfinite(loss.detach())).float()
        stop = torch.full_like(nonfinite, float(self._signal_received is not None))  # a fill, not a host copy
        flags = torch.stack([nonfinite, stop])
        summed = self.dist.sync_gradients(self._trainable, flags)
        if not read:
            return True
        if bool(summed[1] > 0) and self._stop_signal is None:
            self._stop_signal = self._signal_received or signal.SIGTERM
        return not bool(summed[0] > 0)

    def _gradients_finite(self, epoch: int, step: int) -> bool:
        """Whether every gradient is finite; under ``nan_policy="raise"`` a bad one raises, naming the parameters."""
        grads = [p.grad for p in self._trainable if p.grad is not None]
        # NaN and Inf propagate through a sum: one reduction per tensor (a norm costs several times more)
        if not grads or bool(torch.isfinite(torch.stack([g.sum() for g in grads]).sum())):
            return True
        if self.nan_policy == "skip":
            return False
        names = {id(p): n for n, p in self.model.named_parameters()}
        bad = [names.get(id(p), "?") for p in self._trainable if p.grad is not None
               and not bool(torch.isfinite(p.grad).all())]
        raise NonFiniteLossError(
            f"non-finite gradient at epoch {epoch}, step {step} (or up to check_every steps before) in "
            f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Training stopped before the update; the last "
            "good checkpoint (if any) is kept. Try a lower learning rate, or nan_policy='skip'."
        )

    @staticmethod
    def _check_finite(loss_sum: Tensor, terms: dict[str, Tensor], epoch: int, step: int) -> None:
        if bool(torch.isfinite(loss_sum)):
            return
        bad = [k for k, v in terms.items() if not bool(torch.isfinite(v).all())]
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch}, step {step} (or up to check_every steps before); "
            f"terms that went bad: {bad or 'none of the logged terms'}. Training stopped; the last "
            "good checkpoint (if any) is kept. Try a lower learning rate or check the inputs."
        )

    # ------------------------------------------------------------ evaluation

    def evaluate(
        self,
        data: ImageDataset | Tensor,
        corruption: Corruption | None = None,
        seed: int | None = None,
        iwae_k: int | None = None,
    ) -> dict[str, float]:
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
        A conditional model gets each batch's condition from
        ``model.condition.prepare(corrupted, mask, labels)``.
        """
        images, labels = self._prepare(data, "data"), self._labels(data, "data")
        corruption = corruption.to(self.device) if corruption is not None else None
        fixed = self._fixed_corruption(images, self.seed + 5 if seed is None else seed, corruption)
        out = {**self._evaluate_fixed(fixed, labels), **self._input_quality(fixed)}
        if iwae_k and getattr(self.model, "prior", None) is not None:
            was_training = self.model.training
            self.model.eval()
            try:
                with validation(False):
                    condition = self._condition_of(fixed.corrupted, fixed.mask, labels)
                    out.update(likelihood_metrics(cast(LatentModel, self.model), fixed.clean, k=iwae_k,
                                                  condition=condition))
            finally:
                self.model.train(was_training)
        return out

    def _evaluate_fixed(self, fixed: _Fixed, labels: Tensor | None) -> dict[str, float]:
        """Loss, terms and repair quality on a fixed corruption (means per image)."""
        was_training = self.model.training
        self.model.eval()
        needs_grad = bool(getattr(self.objective, "needs_grad", False))
        partial = fixed.partial_mask()
        sums: dict[str, Tensor | float] = {}
        try:
            with validation(False):
                for i in range(0, len(fixed.clean), self.eval_batch_size):
                    part = slice(i, i + self.eval_batch_size)
                    x, x_in, mask = fixed.clean[part], fixed.corrupted[part], fixed.mask[part]
                    batch_labels = labels[part] if labels is not None else None
                    condition = self._condition_of(x_in, mask, batch_labels)
                    with torch.set_grad_enabled(needs_grad):
                        loss, terms = self._run_objective(x_in, x, condition)
                    with torch.no_grad():
                        repaired = cast(LatentModel, self.model).reconstruct(x_in, condition)
                        batch = {
                            "loss": loss.detach() * len(x),
                            **{k: v.detach().sum() for k, v in terms.items()},
                            "psnr": psnr(repaired, x, reduction="none").sum(),
                            "ssim": ssim(repaired, x, reduction="none").sum(),
                        }
                        if partial:
                            batch["psnr_missing"] = psnr(repaired, x, reduction="none", mask=mask).nansum()
                    for k, v in batch.items():
                        sums[k] = sums.get(k, 0.0) + v
        finally:
            self.model.train(was_training)
        out = {k: float(v) / len(fixed.clean) for k, v in sums.items()}
        if partial:
            out["psnr_missing"] = float(sums["psnr_missing"]) / fixed.n_with_missing()
        out["n"] = float(len(fixed.clean))
        return out

    def _input_quality(self, fixed: _Fixed) -> dict[str, float]:
        """PSNR/SSIM of the corrupted inputs themselves (the "before repair" numbers)."""
        clean, corrupted, mask = fixed
        partial = fixed.partial_mask()
        sums = {"psnr_input": 0.0, "ssim_input": 0.0, "psnr_missing_input": 0.0}
        for i in range(0, len(clean), self.eval_batch_size):
            part = slice(i, i + self.eval_batch_size)
            x, x_in = clean[part], corrupted[part]
            sums["psnr_input"] += float(psnr(x_in, x, reduction="none").sum())
            sums["ssim_input"] += float(ssim(x_in, x, reduction="none").sum())
            if partial:
                sums["psnr_missing_input"] += float(psnr(x_in, x, reduction="none", mask=mask[part]).nansum())
        out = {k: v / len(clean) for k, v in sums.items()}
        if partial:
            out["psnr_missing_input"] = sums["psnr_missing_input"] / fixed.n_with_missing()
        else:
            del out["psnr_missing_input"]
        return out

    # ------------------------------------------------------------ checkpoints

    def state_dict(self, progress: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything a checkpoint holds, as tensors and plain values: weights, optimizer, scheduler,
        objective state, counters, history, random-number states, and ``progress`` (where a mid-epoch
        checkpoint stopped; ``None`` at an epoch end)."""
        spec = getattr(self.model, "spec", None)
        objective_state = getattr(self.objective, "state_dict", None)
        return {
            "model_spec": spec,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "objective": objective_state() if objective_state is not None else None,
            "epoch": len(self.history),
            "history": self.history.to_dict(),
            "trainer": {"epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed,
                        "corruption": repr(self.corruption), "global_step": self.global_step,
                        "target_epoch": self._target_epoch, "best": self._best, "since_best": self._since_best},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": capture_rng({"batch": self._batch_gen, "corruption": self._corrupt_gen}),
            "rng_ranks": self.dist.gather_object(torch.get_rng_state()) if self.dist.enabled else None,
            "progress": progress,
            "metadata": self.metadata,
        }

    def _save(self, name: str, progress: dict[str, Any] | None = None) -> None:
        if self.checkpoint_dir is not None:
            state = self.state_dict(progress)  # every process takes part (the random states are gathered)
            if self.dist.is_main:
                save_checkpoint(self.checkpoint_dir / name, state)

    def _resume(self, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """Restore everything :meth:`state_dict` saved; returns the mid-epoch progress (``None``: an epoch end)."""
        data = load_checkpoint(path, map_location=self.device)
        if "rng" not in data or "trainer" not in data:
            raise CheckpointError(f"{str(path)!r} has no training state to resume from (only weights)")
        differences = spec_differences(data.get("model_spec"), getattr(self.model, "spec", None))
        why = state_mismatch(self.model, data["model"])
        if differences or why:
            raise CheckpointError(
                f"{str(path)!r} was written for a different model: {'; '.join(differences) or why}; "
                "build the model with the checkpoint's settings (vaerepair.load_model rebuilds a built-in one)"
            )
        saved = data["trainer"]
        if saved.get("batch_size") != self.batch_size or saved.get("seed") != self.seed:
            raise CheckpointError(
                f"{str(path)!r} was written with batch_size={saved.get('batch_size')}, seed={saved.get('seed')}; "
                f"this Trainer has batch_size={self.batch_size}, seed={self.seed}: an exact resume needs the same"
            )
        self.model.load_state_dict(data["model"])
        try:
            self.optimizer.load_state_dict(data["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"the optimizer state in {str(path)!r} does not fit this optimizer: {err}") from err
        if self.scheduler is not None and data.get("scheduler") is not None:
            self.scheduler.load_state_dict(data["scheduler"])
        if self.scaler.is_enabled() and data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        load_objective = getattr(self.objective, "load_state_dict", None)
        if load_objective is not None and data.get("objective") is not None:
            load_objective(data["objective"])
        self.history = History.from_dict(data["history"])
        self.global_step = int(saved["global_step"])
        self._target_epoch = int(saved["target_epoch"])
        self._best, self._since_best = saved["best"], int(saved["since_best"])
        restore_rng(data["rng"], {"batch": self._batch_gen, "corruption": self._corrupt_gen})
        ranks = data.get("rng_ranks")
        if self.dist.enabled and ranks is not None and len(ranks) == self.dist.world_size:
            torch.set_rng_state(ranks[self.dist.rank].cpu())  # each process's own latent-noise stream
        self._checked = True
        progress: dict[str, Any] | None = data.get("progress")
        return progress
