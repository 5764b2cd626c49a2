"""One trainer for every mmgraph model (and for models users write themselves)."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import signal
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
from .checkpoint import atomic_save, check_compatible, dataset_signature, load_checkpoint
from .config import RESUMABLE_CHANGES, TrainConfig, replace_checked


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns (also written to ``results.json``)."""
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


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


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
    steps, the validation split is evaluated (full ranking), and when
    ``valid_metric`` improves the test split is evaluated too; training stops
    after ``patience`` evaluations without improvement. The model ends in its
    best-validation state.

    With ``out_dir``: ``metrics.jsonl`` (one JSON object per epoch),
    ``checkpoint.pt`` (atomic, after every epoch), ``best_model.pt``,
    ``results.json`` and ``results.md``. ``resume=True`` continues from the
    checkpoint and, on CPU, reproduces the uninterrupted run exactly (model,
    optimiser, schedule and every random-number state are restored).
    Ctrl-C stops after saving the last finished epoch; rerun with ``resume``.

    CUDA note: scatter-based sparse kernels use atomics, so CUDA runs are not
    bitwise reproducible; CPU runs are.
    """

    def __init__(self, model: Recommender, data: HeteroData, config: TrainConfig | None = None,
                 evaluator: Evaluator | None = None):
        self.config = config if config is not None else train_config_for(model)
        self.model = model
        self.data = data
        self.device = torch.device(self.config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {self.config.device!r} requested but CUDA is not available")
        self.evaluator = evaluator or Evaluator(data, ks=self.config.ks,
                                                batch_size=self.config.eval_batch_size)
        self.out_dir = Path(self.config.out_dir) if self.config.out_dir else None

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        params = [p for p in self.model.parameters() if p.requires_grad]
        return cls(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _make_scheduler(self, opt) -> torch.optim.lr_scheduler.LRScheduler:
        decay, every = self.config.lr_decay, self.config.lr_decay_every
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: decay ** (e // every))

    def evaluate(self, split: str = "test", **kw) -> dict[str, float]:
        """Full-ranking metrics of the model in its current state."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model()
            res = self.evaluator.evaluate(lambda u: self.model.score(u, out), split=split, **kw)
        self.model.train(was_training)
        return res

    # ---------------------------------------------------------------- running
    def fit(self) -> TrainResult:
        cfg = self.config
        seed_everything(cfg.seed)
        model = self.model.to(self.device)
        opt = self._make_optimizer()
        sched = self._make_scheduler(opt)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        loader = InteractionLoader(self.data, batch_size=cfg.batch_size, shuffle=True,
                                   num_neg=cfg.num_neg if model.uses_negatives else 0,
                                   generator=gen, device=self.device)
        state = {"epoch": -1, "best_value": -math.inf, "best_epoch": -1, "best_valid": {},
                 "test": {}, "bad": 0, "history": []}
        best_state = None
        data_sig = dataset_signature(self.data)
        ckpt_path = self.out_dir / "checkpoint.pt" if self.out_dir else None

        if cfg.resume:
            if ckpt_path is None:
                raise ValueError("resume=True needs out_dir (where checkpoint.pt is)")
            ckpt = load_checkpoint(ckpt_path)
            check_compatible(ckpt, model.extra_state_key(), data_sig, ckpt_path)
            saved = ckpt["train_config"]
            now = dataclasses.asdict(cfg)
            changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
            if changed:
                raise ValueError(f"cannot resume from {ckpt_path}: the training config changed in "
                                 + ", ".join(f"{k} ({saved.get(k)!r} -> {now[k]!r})" for k in changed))
            model.load_state_dict(ckpt["model_state"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            gen.set_state(ckpt["loader_generator"])
            _set_rng_state(ckpt["rng"])
            state = ckpt["trainer_state"]
            best_state = ckpt["best_state"]
            self._rewrite_metrics(state["history"])
        elif self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "metrics.jsonl").write_text("")

        interrupted = False
        start = state["epoch"] + 1
        bar = tqdm(range(start, cfg.epochs), desc=f"{model.name or type(model).__name__}",
                   disable=not cfg.progress, initial=start, total=cfg.epochs, unit="epoch")
        try:
            for epoch in bar:
                if state["bad"] >= cfg.patience:
                    break
                row = self._train_epoch(epoch, loader, opt)
                sched.step()
                if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                    t0 = time.perf_counter()
                    valid = self.evaluate("valid")
                    row["eval_seconds"] = time.perf_counter() - t0
                    row["valid"] = valid
                    value = valid[cfg.valid_metric]
                    if value > state["best_value"]:
                        state.update(best_value=value, best_epoch=epoch, best_valid=valid, bad=0)
                        state["test"] = self.evaluate("test")
                        row["test"] = state["test"]
                        best_state = {k: v.detach().to("cpu", copy=True)
                                      for k, v in model.state_dict().items()}
                    else:
                        state["bad"] += 1
                state["epoch"] = epoch
                state["history"].append(row)
                self._log(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}",
                                **({cfg.valid_metric: f"{row['valid'][cfg.valid_metric]:.4f}"}
                                   if "valid" in row else {}),
                                best=f"{state['best_value']:.4f}")
                if ckpt_path is not None:
                    self._save(ckpt_path, model, opt, sched, gen, state, best_state, data_sig)
        except KeyboardInterrupt:
            interrupted = True
            where = (f"checkpoint of epoch {state['epoch']} is in {ckpt_path}; resume with "
                     f"--resume" if ckpt_path is not None else "no out_dir, nothing saved")
            print(f"\ninterrupted: {where}")
        finally:
            bar.close()

        if best_state is not None:
            model.load_state_dict(best_state)
        hist = state["history"]
        train_s = [h["train_seconds"] for h in hist]
        eval_s = [h["eval_seconds"] for h in hist if "eval_seconds" in h]
        result = TrainResult(
            best_epoch=state["best_epoch"], best_valid=state["best_valid"], test=state["test"],
            history=hist, epochs_run=len(hist), interrupted=interrupted,
            seconds_per_epoch=float(np.mean(train_s)) if train_s else float("nan"),
            seconds_per_eval=float(np.mean(eval_s)) if eval_s else float("nan"))
        if self.out_dir is not None and not interrupted:
            atomic_save({"model_key": model.extra_state_key(), "data_signature": data_sig,
                         "model_state": model.state_dict()}, self.out_dir / "best_model.pt")
            self.write_results(result)
        return result

    def _train_epoch(self, epoch: int, loader, opt) -> dict[str, Any]:
        model = self.model
        model.train()
        model.on_epoch_start(epoch)
        t0 = time.perf_counter()
        totals: dict[str, torch.Tensor] = {}
        n = 0
        for batch in loader:
            out = model()
            terms = model.loss(batch, out)
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in terms.items():
                totals[k] = totals.get(k, 0) + v.detach()
            n += 1
        # one host sync per epoch
        terms = {k: float(v) / max(n, 1) for k, v in totals.items()}
        return {"epoch": epoch, "loss": sum(terms.values()), "terms": terms,
                "lr": opt.param_groups[0]["lr"], "train_seconds": time.perf_counter() - t0}

    # ------------------------------------------------------------------ files
    def _log(self, row: dict[str, Any]) -> None:
        if self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def _rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))

    def _save(self, path, model, opt, sched, gen, state, best_state, data_sig) -> None:
        # Ctrl-C during the write must not leave a torn checkpoint: defer SIGINT.
        previous = signal.getsignal(signal.SIGINT)
        pending = []
        try:
            signal.signal(signal.SIGINT, lambda *a: pending.append(a))
        except ValueError:  # not in the main thread
            previous = None
        try:
            atomic_save({
                "model_key": model.extra_state_key(), "data_signature": data_sig,
                "train_config": dataclasses.asdict(self.config),
                "model_state": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "loader_generator": gen.get_state(),
                "rng": _rng_state(), "trainer_state": copy.deepcopy(state),
                "best_state": best_state}, path)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt

    def write_results(self, result: TrainResult) -> None:
        """``results.json`` + ``results.md`` (+ ``learning_curve.png`` with matplotlib)."""
        payload = {"model": self.model.extra_state_key(),
                   "train_config": dataclasses.asdict(self.config),
                   "data": dataset_signature(self.data), **result.to_dict()}
        (self.out_dir / "results.json").write_text(json.dumps(payload, indent=2))
        (self.out_dir / "results.md").write_text(format_result(result, self.model.name))
        try:
            from .plots import plot_history
            plot_history(result.history, self.out_dir / "learning_curve.png",
                         metric=self.config.valid_metric)
        except ImportError:
            pass


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
