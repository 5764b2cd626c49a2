"""One trainer for every mmgraph model (and for models users write themselves)."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from ..evaluation import Evaluator
from ..models.base import Recommender
from ..sampling import InteractionLoader
from .allocator import tuned_malloc
from .checkpoint import atomic_save, check_compatible, dataset_signature
from .config import RESUMABLE_CHANGES, TrainConfig, check_device, replace_checked
from .distributed import (DistributedContext, ShardedEvaluator, all_reduce_sum, init_distributed,
                          shard_batch, wrap_model)
from .runfolder import RunFolder, RunFolderError, data_spec_for_record


#: Single-process training checks the running loss for NaN/inf every this many steps
#: (one host sync each time; distributed runs check at the end of each epoch).
NONFINITE_CHECK_STEPS = 256
#: A bar of the steps inside an epoch appears once the epoch has run this many seconds.
_STEP_BAR_DELAY = 3.0


class TrainingDiverged(FloatingPointError):
    """The training loss or the weights became NaN/inf. The epoch is not saved:
    the run folder keeps the last good checkpoint and the best model."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns (also written to ``results.json``).

    Attributes:
        best_epoch: epoch with the best ``valid_metric`` (``-1``: none evaluated).
        best_valid: validation metrics of that epoch.
        test: test metrics of that epoch.
        history: one dict per epoch, as in ``metrics.jsonl``
            (:data:`~mmgraph.train.runfolder.METRICS_FIELDS`).
        epochs_run: epochs trained, resumed ones included.
        interrupted: stopped by Ctrl-C or SIGTERM (the results are those of
            the best epoch so far).
        seconds_per_epoch, seconds_per_eval: mean wall times (``nan``, written
            as ``null``, when there was none).
        extra: ``world_size`` and ``amp``.
    """
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    epochs_run: int
    interrupted: bool = False
    seconds_per_epoch: float = float("nan")
    seconds_per_eval: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_config_for(model: Recommender | type[Recommender], **overrides) -> TrainConfig:
    """:class:`TrainConfig` with the model's ``train_defaults``, then ``overrides``."""
    merged = {**getattr(model, "train_defaults", {}), **overrides}
    return replace_checked(TrainConfig(), **merged)


_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.amp`` on ``device`` (``None``: no autocast).

    Raises:
        ValueError: unknown ``amp``; ``'fp16'`` on a non-CUDA device (float16
            autocast + loss scaling is a CUDA feature: use ``'bf16'`` on CPU);
            ``'bf16'`` on a GPU without bfloat16 support; a device type other
            than CPU/CUDA.
    """
    if amp is None:
        return None
    if amp not in _AMP_DTYPES:
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    device = torch.device(device)
    if device.type == "cpu":
        if amp == "fp16":
            raise ValueError("amp='fp16' (float16 autocast with a GradScaler) needs a CUDA "
                             "device; on CPU use amp='bf16' (CPU bfloat16 autocast) or amp=None")
        return torch.bfloat16
    if device.type == "cuda":
        if amp == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ValueError(f"amp='bf16' but {torch.cuda.get_device_name(device)} has no "
                             "bfloat16 support; use amp='fp16'")
        return _AMP_DTYPES[amp]
    raise ValueError(f"amp={amp!r} is supported on 'cpu' (bf16) and 'cuda' (bf16, fp16), "
                     f"not on device {str(device)!r}")


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _all_finite(t: torch.Tensor) -> torch.Tensor:
    """Whether every value of ``t`` is finite, as a 0-d bool tensor (no host sync).

    ``torch.isfinite(t).all()`` would allocate an ``abs`` copy of ``t`` and two
    boolean masks of its size (~1.7x a 7,050 x 4,096 feature table, at the end
    of every epoch); the smallest and largest value say the same (NaN
    propagates through both, an infinity is one of them) and allocate nothing.
    """
    if t.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=t.device)
    lo, hi = torch.aminmax(t.detach())
    return torch.isfinite(lo) & torch.isfinite(hi)


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    r"""Mini-batch training with early stopping, following MMRec's protocol.

    Each epoch: ``model.on_epoch_start(epoch)``; for every batch of shuffled
    training interactions (with ``num_neg`` uniform negatives when
    ``model.uses_negatives``) ``out = model()``, ``loss = sum(model.loss(batch,
    out).values())``, one optimiser step. Then the learning-rate schedule
    steps, and every ``eval_every`` epochs the validation and test splits are
    evaluated (full ranking; both go to ``metrics.jsonl``, so test curves can
    be drawn, as in the MMRec toolbox); the reported test metrics are those
    of the best validation epoch. Training stops after ``patience``
    evaluations without improvement of ``valid_metric``. The model ends in
    its best-validation state.

    **Divergence.** A NaN/inf loss term (the running sum is checked every
    :data:`NONFINITE_CHECK_STEPS` steps and at the end of each epoch: no host
    sync per step) or NaN/inf weights after an epoch raise
    :class:`TrainingDiverged` naming the epoch and the term; that epoch is not
    saved, so the folder keeps the last good checkpoint and the best model,
    and the model in memory is restored to its best state.

    With ``out_dir`` the trainer owns that run folder
    (:mod:`mmgraph.train.runfolder`: ``run.json``, ``metrics.jsonl``, two
    checkpoint generations, ``best_model.pt``, results; atomic files, one
    writer under a lock). A folder that already holds a run is refused
    unless ``resume`` or ``overwrite``. ``resume=True`` continues from the
    checkpoint and, on CPU, reproduces the uninterrupted run exactly (model,
    optimiser, schedule and every random-number state are restored).
    Ctrl-C (or SIGTERM, while :meth:`fit` runs) stops after the last
    finished epoch, whose checkpoint is on disk, and writes ``results.json``
    of the best epoch so far with ``"interrupted": true``; rerun with
    ``resume``.

    Args:
        model: the model to train.
        data: its dataset.
        config: training settings (default: :func:`train_config_for` ``(model)``).
        evaluator: custom evaluator (default: full ranking with ``config.ks``).
        dist: an existing process-group context (default: joined when
            running under ``torchrun``).
        data_spec: how to load ``data`` again (a folder or ``synthetic:``
            spec), recorded in ``run.json`` (paths made absolute) so that
            ``mmgraph evaluate RUN`` finds it; without it, pass ``--data``.

    CUDA note: scatter-based sparse kernels use atomics, so CUDA runs are not
    bitwise reproducible; CPU runs are.

    **Distributed.** Inside a ``torchrun`` process group (``WORLD_SIZE > 1``;
    ``mmgraph train --nproc N`` starts one) the trainer joins the group
    (gloo on CPU, NCCL with ``device='cuda'`` -> ``cuda:LOCAL_RANK``), wraps
    the model in ``DistributedDataParallel`` and trains on each rank's shard
    of the same global batches; evaluation is sharded by users and reduced.
    Same seed and ``batch_size`` give the single-process results (exactly
    for batch-mean losses, up to float rounding); see
    :mod:`mmgraph.train.distributed` for what differs for in-batch-negative
    losses. Only rank 0 writes files and shows progress. Pass ``dist`` to use
    an existing :class:`~mmgraph.train.distributed.DistributedContext`.

    **Mixed precision** (``amp='bf16'|'fp16'``): the model's forward and loss
    run under :func:`torch.autocast` (dense matmuls / linear layers in the
    low-precision type), backward and the optimiser step in float32, with a
    :class:`torch.amp.GradScaler` for ``'fp16'``. ``'fp16'`` needs CUDA; on
    CPU ``'bf16'`` uses CPU autocast. Sparse propagation
    (:meth:`SparseAdj.matmul <mmgraph.graph.SparseAdj.matmul>`) is meant to
    stay float32 (it must run with autocast disabled and upcast a half
    input). Evaluation always runs in float32.
    """

    def __init__(self, model: Recommender, data: HeteroData, config: TrainConfig | None = None,
                 evaluator: Evaluator | None = None, dist: DistributedContext | None = None,
                 data_spec: str | None = None):
        self.config = config if config is not None else train_config_for(model)
        self.data_spec = data_spec_for_record(data_spec)
        self.model = model
        self.data = data
        self.device = check_device(self.config.device)
        self.amp_dtype = amp_dtype(self.config.amp, self.device)
        self.dist = dist if dist is not None else init_distributed(self.device)
        if self.dist is not None:
            self.device = self.dist.device
        evaluator = evaluator or Evaluator(data, ks=self.config.ks,
                                           batch_size=self.config.eval_batch_size,
                                           progress=self.config.progress)
        if self.dist is not None and not isinstance(evaluator, ShardedEvaluator):
            evaluator = ShardedEvaluator.from_evaluator(evaluator, self.dist)
        if self.dist is not None and not self.dist.is_main:
            evaluator.progress = False
        self.evaluator = evaluator
        self.out_dir = Path(self.config.out_dir) if self.config.out_dir else None
        self._run: RunFolder | None = None   # the locked run folder while fit() runs (rank 0)
        self._ddp = None            # the DistributedDataParallel wrapper, made in fit()
        self._scaler = None         # GradScaler for amp='fp16', made in fit()

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0, or the only process)."""
        return self.dist is None or self.dist.is_main

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The fused kernel updates every tensor in one pass: ~6-10x faster per step
        # than the per-tensor loop when trainable feature tables hold ~30M values.
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                     for p in params)
        return cls(params, lr=self.config.lr, weight_decay=self.config.weight_decay, fused=fused)

    def _make_scheduler(self, opt) -> torch.optim.lr_scheduler.LRScheduler:
        decay, every = self.config.lr_decay, self.config.lr_decay_every
        # MMRec's form: lr(e) = lr * decay ** (e / every), i.e. x decay over every `every` epochs
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: decay ** (e / every))

    def evaluate(self, split: str = "test", **kw) -> dict[str, float]:
        """Full-ranking metrics of the model in its current state (float32).

        Distributed: a collective (call it on every rank); every rank gets
        the metrics of all users.
        """
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model()
            res = self.evaluator.evaluate(lambda u: self.model.score(u, out), split=split, **kw)
        self.model.train(was_training)
        return res

    # ---------------------------------------------------------------- running
    def fit(self) -> TrainResult:
        """Train with early stopping; returns the test metrics at the best valid epoch.

        While it runs, SIGTERM is handled like Ctrl-C and ``threads`` (if set)
        is torch's intra-op thread count (both restored on return), and on
        CPU with ``tune_malloc=True`` the run keeps freed memory in the
        process (:func:`~mmgraph.train.allocator.tuned_malloc`): the same
        large buffers are not page-faulted again in every step.

        Raises:
            TrainingDiverged: the loss or the weights became NaN/inf.
            RunFolderError: ``out_dir`` holds another run, or another
                process is writing it.
        """
        with tuned_malloc(self.config.tune_malloc and self.device.type == "cpu"), \
                _sigterm_interrupts(), _intra_op_threads(self.config.threads):
            self._run = self._open_run_folder()
            try:
                return self._fit()
            finally:
                if self._run is not None:
                    self._run.close()
                    self._run = None

    def _say(self, message: str) -> None:
        """A notice on stderr (rank 0 only)."""
        if self.is_main:
            print(message, file=sys.stderr, flush=True)

    def _open_run_folder(self) -> RunFolder | None:
        """Rank 0 opens and locks ``out_dir``; every rank learns whether it could."""
        if self.out_dir is None:
            return None
        run, err = None, None
        if self.is_main:
            try:
                run = RunFolder(self.out_dir).open(self.config.resume, self.config.overwrite,
                                                   log=self._say)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks know
                err = e
        if self.dist is not None:
            failed = all_reduce_sum(torch.tensor([float(err is not None)]), self.dist)
            if float(failed[0]) and err is None:
                raise RunFolderError(f"rank 0 could not open the run folder {self.out_dir}")
        if err is not None:
            raise err
        return run

    def _run_record(self, data_sig: dict[str, Any]) -> dict[str, Any]:
        """``run.json``: what was trained on what (see :mod:`mmgraph.train.runfolder`)."""
        spec = self.data_spec
        if spec is None and self.config.resume:
            try:   # resumed from Python without a spec: keep the recorded one
                spec = self._run.read_run().get("data")
            except (FileNotFoundError, ValueError):
                spec = None
        return {"model": self.model.name, "data": spec, "data_signature": data_sig,
                "model_config": dataclasses.asdict(self.model.config),
                "train_config": dataclasses.asdict(self.config),
                "world_size": 1 if self.dist is None else self.dist.world_size}

    def _fit(self) -> TrainResult:
        cfg = self.config
        seed_everything(cfg.seed)
        model = self.model.to(self.device)
        opt = self._make_optimizer()
        sched = self._make_scheduler(opt)
        scaler = (torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16
                  else None)
        self._scaler = scaler
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        loader = InteractionLoader(self.data, batch_size=cfg.batch_size, shuffle=True,
                                   num_neg=cfg.num_neg if model.uses_negatives else 0,
                                   generator=gen, device=self.device)
        state = {"epoch": -1, "best_value": -math.inf, "best_epoch": -1, "best_valid": {},
                 "test": {}, "bad": 0, "history": []}
        best_state = None
        data_sig = dataset_signature(self.data)
        run = self._run
        ckpt_path = self.out_dir / "checkpoint.pt" if self.out_dir else None

        if cfg.resume:
            if ckpt_path is None:
                raise ValueError("resume=True needs out_dir (where checkpoint.pt is)")
            ckpt, ckpt_path = RunFolder(self.out_dir).load_latest_checkpoint(log=self._say)
            check_compatible(ckpt, model.extra_state_key(), data_sig, ckpt_path,
                             model.config_defaults())
            saved = ckpt["train_config"]
            now = dataclasses.asdict(cfg)
            # a field the checkpoint predates counts as unchanged at its default
            defaults = dataclasses.asdict(TrainConfig())
            changed = sorted(k for k in now if k not in RESUMABLE_CHANGES
                             and saved.get(k, defaults.get(k)) != now[k])
            if changed:
                raise ValueError(f"cannot resume from {ckpt_path}: the training config changed in "
                                 + ", ".join(f"{k} ({saved.get(k, defaults.get(k))!r} -> {now[k]!r})"
                                            for k in changed))
            model.load_state_dict(ckpt["model_state"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            gen.set_state(ckpt["loader_generator"])
            _set_rng_state(ckpt["rng"])
            if scaler is not None and ckpt.get("grad_scaler") is not None:
                scaler.load_state_dict(ckpt["grad_scaler"])
            state = ckpt["trainer_state"]
            best_state = ckpt["best_state"]
            del ckpt
            if run is not None:
                run.reset_metrics(state["history"])
                if best_state is not None:
                    # with sparse checkpoints (checkpoint_every > 1, then or now)
                    # best_model.pt may hold an epoch after the checkpoint's
                    self._save_best(best_state, data_sig)
        elif run is not None:
            run.reset_metrics()
        if run is not None:
            run.write_json("run.json", self._run_record(data_sig))

        interrupted = False
        start = state["epoch"] + 1
        saved_epoch = state["epoch"]            # the epoch of the newest checkpoint.pt
        bar = tqdm(total=self._epoch_bound(state), initial=start, unit="epoch",
                   desc=f"{model.name or type(model).__name__}",
                   disable=not (cfg.progress and self.is_main))
        try:
            for epoch in range(start, cfg.epochs):
                if state["bad"] >= cfg.patience:
                    break
                row = self._train_epoch(epoch, loader, opt)
                sched.step()
                evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
                if evaluated:
                    t0 = time.perf_counter()
                    valid = self.evaluate("valid")
                    t1 = time.perf_counter()
                    test = self.evaluate("test")
                    improved = valid[cfg.valid_metric] > state["best_value"]
                    row.update(valid=valid, test=test, improved=improved,
                               eval_seconds=time.perf_counter() - t0, valid_seconds=t1 - t0)
                # the epoch's record (state, metrics line, best model, checkpoint) is
                # complete or absent: an interrupt during it is raised after it
                with _deferred_interrupts():
                    if evaluated and improved:
                        state.update(best_value=valid[cfg.valid_metric], best_epoch=epoch,
                                     best_valid=valid, test=test, bad=0)
                        best_state = {k: v.detach().to("cpu", copy=True)
                                      for k, v in model.state_dict().items()}
                        if run is not None:
                            self._save_best(best_state, data_sig)
                    elif evaluated:
                        state["bad"] += 1
                    state["epoch"] = epoch
                    state["history"].append(row)
                    self._log(row)
                    last = epoch + 1 == cfg.epochs or state["bad"] >= cfg.patience
                    if run is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
                        self._save(model, opt, sched, gen, state, best_state, data_sig)
                        saved_epoch = epoch
                bar.total = self._epoch_bound(state)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}",
                                **({cfg.valid_metric: f"{row['valid'][cfg.valid_metric]:.4f}"}
                                   if "valid" in row else {}),
                                best=f"{state['best_value']:.4f}",
                                patience=f"{state['bad']}/{cfg.patience}")
        except KeyboardInterrupt:
            interrupted = True
            self._say(self._interrupt_message(state, saved_epoch))
        except TrainingDiverged as err:
            self._release_ddp()
            if best_state is not None:
                model.load_state_dict(best_state)
            if run is not None:
                err.args = (f"{err.args[0]}; nothing of that epoch was saved: {self.out_dir} keeps "
                            + (f"the checkpoint of epoch {saved_epoch}" if saved_epoch >= 0
                               else "no checkpoint")
                            + (f" and the best model (epoch {state['best_epoch']})"
                               if best_state is not None else "")
                            + "; lower --lr (or check the data and the model) and start again "
                              "with --overwrite",)
            raise
        finally:
            bar.close()

        self._release_ddp()
        if best_state is not None:
            model.load_state_dict(best_state)
        hist = state["history"]
        train_s = [h["train_seconds"] for h in hist]
        eval_s = [h["eval_seconds"] for h in hist if "eval_seconds" in h]
        result = TrainResult(
            best_epoch=state["best_epoch"], best_valid=state["best_valid"], test=state["test"],
            history=hist, epochs_run=len(hist), interrupted=interrupted,
            seconds_per_epoch=float(np.mean(train_s)) if train_s else float("nan"),
            seconds_per_eval=float(np.mean(eval_s)) if eval_s else float("nan"),
            extra={"world_size": 1 if self.dist is None else self.dist.world_size,
                   "amp": cfg.amp})
        if run is not None:
            with _deferred_interrupts():     # a second Ctrl-C waits for the results
                if best_state is not None:
                    self._save_best(best_state, data_sig)
                self.write_results(result)
        return result

    def _epoch_bound(self, state: dict[str, Any]) -> int:
        """Epochs the run will have trained at most unless validation improves
        again: ``epochs``, or fewer when early stopping decides first (the
        epoch bar's total)."""
        cfg = self.config
        left = max(cfg.patience - state["bad"], 0) * cfg.eval_every
        if state["best_epoch"] < 0:      # the first evaluation always improves
            left += cfg.eval_every
        return min(cfg.epochs, state["epoch"] + 1 + left)

    def _interrupt_message(self, state: dict[str, Any], saved_epoch: int) -> str:
        """What an interrupt kept, and how to continue (true for this run)."""
        if self.out_dir is None:
            return "\ninterrupted: no out_dir, nothing was saved"
        if saved_epoch < 0:
            return (f"\ninterrupted before the first checkpoint was written: nothing to resume in "
                    f"{self.out_dir}; start again with --overwrite (overwrite=True)")
        best = (f"; results of the best epoch so far ({state['best_epoch']}) in "
                f"{self.out_dir / 'results.json'}" if state["best_epoch"] >= 0 else "")
        return (f"\ninterrupted: the checkpoint of epoch {saved_epoch} is in "
                f"{self.out_dir / 'checkpoint.pt'}{best}; continue with --resume (resume=True)")

    def _train_epoch(self, epoch: int, loader, opt) -> dict[str, Any]:
        model = self.model
        ctx = self.dist
        net = self._wrapped() if ctx is not None else model     # DDP wrapper or the model
        scaler = self._scaler
        model.train()
        model.on_epoch_start(epoch)
        t0 = time.perf_counter()
        totals: dict[str, torch.Tensor] = {}
        n = 0
        steps = tqdm(total=len(loader), desc=f"epoch {epoch}", unit="batch", leave=False,
                     delay=_STEP_BAR_DELAY, disable=not (self.config.progress and self.is_main))
        try:
            for batch in loader:
                weight = 1.0
                if ctx is not None:
                    batch, weight = shard_batch(batch, ctx.rank, ctx.world_size)
                with self._autocast():
                    out = net()
                    terms = model.loss(batch, out)
                    loss = sum(terms.values())
                if weight != 1.0:
                    loss = loss * weight
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
                if ctx is not None:
                    self._check_all_params_used()
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                for k, v in terms.items():
                    v = v.detach().float()
                    totals[k] = totals.get(k, 0) + (v * weight if weight != 1.0 else v)
                n += 1
                steps.update(1)
                if ctx is None and n % NONFINITE_CHECK_STEPS == 0:
                    self._check_finite_loss(epoch, totals, n)     # one host sync per N steps
        finally:
            steps.close()
            # the last step's gradients are not needed any more (the next step sets them
            # anew): without this they are held through evaluation and checkpointing, as
            # large as the trainable feature tables
            opt.zero_grad(set_to_none=True)
        if ctx is not None and totals:
            # weighted shard means -> global-batch means (one collective per epoch)
            keys = list(totals)
            summed = all_reduce_sum(torch.stack([totals[k] for k in keys]), ctx) / ctx.world_size
            totals = dict(zip(keys, summed.unbind(0)))
        # one host sync per epoch
        terms = {k: float(v) / max(n, 1) for k, v in totals.items()}
        self._check_finite_loss(epoch, terms, n)
        self._check_finite_weights(epoch)
        return {"epoch": epoch, "loss": sum(terms.values()), "terms": terms,
                "lr": opt.param_groups[0]["lr"], "train_seconds": time.perf_counter() - t0}

    def _check_finite_loss(self, epoch: int, totals: dict[str, Any], steps: int) -> None:
        """Raise :class:`TrainingDiverged` if a loss term accumulated so far is NaN/inf
        (a non-finite step leaves the running sum non-finite)."""
        if not totals:
            return
        values = [v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                  for v in totals.values()]
        finite = torch.stack([v.reshape(()) for v in values]).isfinite()
        if bool(finite.all()):
            return
        bad = [(k, float(v)) for (k, v), ok in zip(totals.items(), finite.tolist()) if not ok]
        raise TrainingDiverged(
            f"training diverged in epoch {epoch}: the loss term {bad[0][0]!r} is {bad[0][1]} "
            f"after {steps} batch(es)"
            + (f" (also {', '.join(repr(k) for k, _ in bad[1:])})" if len(bad) > 1 else ""))

    def _check_finite_weights(self, epoch: int) -> None:
        """Raise :class:`TrainingDiverged` if a NaN/inf gradient reached the weights
        (one pass over the parameters, one host sync, per epoch)."""
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if not params:
            return
        flags = torch.stack([_all_finite(p) for _, p in params])
        if bool(flags.all()):
            return
        bad = [n for (n, _), ok in zip(params, flags.tolist()) if not ok]
        raise TrainingDiverged(
            f"training diverged in epoch {epoch}: the loss stayed finite but a non-finite "
            f"gradient made these weights NaN/inf: {', '.join(bad[:5])}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))

    def _wrapped(self) -> torch.nn.Module:
        """The model in ``DistributedDataParallel`` (made once, on first use)."""
        if self._ddp is None:
            self._ddp = wrap_model(self.model.to(self.device), self.dist)
        return self._ddp

    def _release_ddp(self) -> None:
        """Drop the DDP wrapper (and its gradient hooks) once training is over.

        It must be gone before the process group is destroyed: a DDP reducer
        that outlives its gloo group can block the interpreter at exit.
        """
        if self._ddp is not None:
            self._ddp = None
            gc.collect()

    def _check_all_params_used(self) -> None:
        """DDP (find_unused_parameters=False) needs a gradient for every trainable
        parameter in every step; name the ones that got none. Checked after every
        backward (a loop over the parameters, no host sync): a model may use a
        parameter in the first step of an epoch only (LATTICE's ``graph_update='epoch'``),
        and DDP's own error comes one step later and names nothing."""
        unused = [name for name, p in self.model.named_parameters()
                  if p.requires_grad and p.grad is None]
        if unused:
            raise RuntimeError(
                "distributed training needs every trainable parameter to receive a gradient "
                "in every step (the loss is computed outside DDP's forward, so unused "
                f"parameters cannot be detected); these got none: {', '.join(unused)}. Freeze "
                "them (p.requires_grad_(False)) or remove them from the model.")

    # ------------------------------------------------------------------ files
    def _log(self, row: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.append_metrics(row)

    def _save_best(self, state_dict: dict[str, torch.Tensor], data_sig) -> None:
        """``best_model.pt``: the weights of the best epoch so far (atomic)."""
        with _deferred_interrupts():
            atomic_save({"model_key": self.model.extra_state_key(), "data_signature": data_sig,
                         "model_state": state_dict}, self._run.best_model)

    def _save(self, model, opt, sched, gen, state, best_state, data_sig) -> None:
        """``checkpoint.pt`` (the previous one kept as ``checkpoint.prev.pt``)."""
        with _deferred_interrupts():
            self._run.save_checkpoint({
                "model_key": model.extra_state_key(), "data_signature": data_sig,
                "train_config": dataclasses.asdict(self.config),
                "model_state": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "loader_generator": gen.get_state(),
                "rng": _rng_state(), "trainer_state": copy.deepcopy(state),
                "best_state": best_state,
                "grad_scaler": self._scaler.state_dict() if self._scaler is not None else None})

    def write_results(self, result: TrainResult) -> None:
        """``results.json`` + ``results.md`` (+ ``learning_curve.png`` with matplotlib),
        each written atomically into ``out_dir``."""
        run = self._run if self._run is not None else RunFolder(self.out_dir)
        payload = {"model": self.model.extra_state_key(),
                   "train_config": dataclasses.asdict(self.config),
                   "data": dataset_signature(self.data), **result.to_dict()}
        run.write_json("results.json", payload)
        run.write_text("results.md", format_result(result, self.model.name))
        try:
            from .plots import plot_history
        except ImportError:
            return
        run.write_with("learning_curve.png", lambda path: plot_history(
            result.history, path, metric=self.config.valid_metric))


@contextlib.contextmanager
def _intra_op_threads(n: int | None):
    """``torch.set_num_threads(n)`` for the block, then the previous count (``None``: untouched)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _sigterm_interrupts():
    """While training, SIGTERM stops like Ctrl-C (``KeyboardInterrupt``: the
    finished epoch is kept and the results are written); the previous handler
    is restored afterwards. Main thread only."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_deferring = False     # a _deferred_interrupts block is active (main thread)


@contextlib.contextmanager
def _deferred_interrupts():
    """Defer SIGINT / SIGTERM while a file is written (main thread only): an
    interrupt during the block is re-raised as ``KeyboardInterrupt`` after it.
    Nested blocks defer to the outermost one."""
    global _deferring
    pending = []
    previous = {}
    if _deferring:
        yield
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda *a: pending.append(a))
        except ValueError:  # not in the main thread
            break
    _deferring = bool(previous)
    try:
        yield
    finally:
        _deferring = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt


def format_result(result: TrainResult, title: str = "") -> str:
    """A human-readable table of valid/test metrics at the best epoch."""
    keys = list(result.test) or list(result.best_valid)
    lines = [f"## {title}".rstrip(), "",
             f"best epoch {result.best_epoch} of {result.epochs_run} run; "
             f"{result.seconds_per_epoch:.2f} s/epoch, {result.seconds_per_eval:.2f} s/eval", "",
             "| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for split, res in (("valid", result.best_valid), ("test", result.test)):
        if res:
            lines.append(f"| {split} | " + " | ".join(f"{res[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"
