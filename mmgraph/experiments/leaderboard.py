r"""The leaderboard: from run folders to the best configuration of each model.

Protocol (MMRec's, extended to seeds). A run's numbers are those of its best
validation epoch (``results.json``: validation metrics of that epoch and test
metrics of the *same* epoch). The runs of a model are grouped by
configuration (model and training settings, the seed aside). The chosen
configuration has the best validation ``valid_metric``: averaged over its
seeds (``select='mean'``), or on the lowest seed alone (``select='first'``,
the MMRec toolbox's single-seed choice); ties go to the first configuration
in folder order. Its test metrics are reported as mean and sample standard
deviation over its seeds.

Against a ``baseline`` model, each model's chosen runs are compared user by
user: every test user's Recall@K / NDCG@K (``K`` of ``valid_metric``; see
:meth:`~mmgraph.evaluation.Evaluator.evaluate_per_user`) is averaged over
the seeds, and the paired t-test and Wilcoxon signed-rank test over users
(:func:`~mmgraph.experiments.stats.paired_tests`) give two-sided p-values.

``leaderboard.json`` holds everything (every configuration's score, the
chosen runs, per-seed values, the tests); ``leaderboard.md`` the table;
``leaderboard.png`` (with matplotlib) the validation curves of the chosen
configurations (mean over seeds) and the test metric with error bars.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..models.base import get_model_class, upgrade_options
from ..train.checkpoint import atomic_write
from ..train.config import RESUMABLE_CHANGES, TrainConfig
from ..train.runfolder import to_json
from ..train.trainer import train_config_for
from .stats import mean_std, paired_tests

__all__ = ["RunRecord", "read_run", "find_runs", "group_configs", "select_config",
           "build_leaderboard", "format_leaderboard", "write_leaderboard", "per_user_metrics",
           "IGNORED_TRAIN_FIELDS"]

#: Training settings that do not make a configuration: the seed, and how and where a run
#: ran (what a resumed run may change, except the epoch budget).
IGNORED_TRAIN_FIELDS = ("seed",) + tuple(k for k in RESUMABLE_CHANGES if k != "epochs")


_TRAIN_DEFAULTS = json.loads(to_json(dataclasses.asdict(TrainConfig())))


def _model_options(model: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """A run's model options under today's names, options added since at their
    defaults (so that older records group with newer ones)."""
    try:
        cls = get_model_class(model)
    except ValueError:
        return dict(recorded)
    defaults = json.loads(to_json(dataclasses.asdict(cls.config_class())))
    return {**defaults, **upgrade_options(cls.config_class, recorded)}


@dataclass
class RunRecord:
    """A finished run, as its folder records it.

    Attributes:
        path: the run folder.
        model: registry name.
        model_config, train_config: the effective configs (``results.json``).
        data: the dataset spec of ``run.json``.
        seed: the training seed.
        best_epoch: the best validation epoch.
        valid, test: metrics of that epoch.
        seconds_per_epoch: mean training time per epoch.
        epochs_run: epochs trained.
        curve: ``[(epoch, valid valid_metric), ...]``.
    """
    path: Path
    model: str
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    data: str | None
    seed: int
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    seconds_per_epoch: float
    epochs_run: int
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def _train_settings(self) -> dict[str, Any]:
        # a field added to TrainConfig after the run was recorded ran at its default
        recorded = {**_TRAIN_DEFAULTS, **self.train_config}
        return {k: v for k, v in recorded.items() if k not in IGNORED_TRAIN_FIELDS}

    @property
    def config_key(self) -> str:
        """What identifies the configuration (the seed and run-time settings aside)."""
        return json.dumps({"model": self.model, "model_config": self.model_config,
                           "train_config": self._train_settings}, sort_keys=True, default=str)

    @property
    def settings(self) -> dict[str, Any]:
        """Model options, then training options (run-time settings aside), as recorded."""
        return {**self.model_config, **self._train_settings}

    def config(self, varying: Sequence[str] = ()) -> dict[str, Any]:
        """The settings that differ from the model's defaults, and those named in
        ``varying`` (e.g. the options a grid varies, even at their default)."""
        cls = get_model_class(self.model)
        base = json.loads(to_json({**dataclasses.asdict(cls.config_class()),
                                   **dataclasses.asdict(train_config_for(cls))}))
        return {k: v for k, v in self.settings.items() if k in varying or base.get(k) != v}


def read_run(path: str | Path) -> RunRecord | None:
    """The record of a finished run folder; ``None`` when it has no ``results.json``
    or the run was interrupted."""
    path = Path(path)
    try:
        res = json.loads((path / "results.json").read_text(encoding="utf-8"))
        meta = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if res.get("interrupted") or res.get("best_epoch", -1) < 0:
        return None
    train = res.get("train_config") or meta.get("train_config", {})
    metric = train.get("valid_metric", "recall@20")
    curve = [(h["epoch"], h["valid"][metric]) for h in res.get("history", []) if "valid" in h]
    spe = res.get("seconds_per_epoch")
    return RunRecord(path=path, model=meta["model"],
                     model_config=_model_options(meta["model"], meta.get("model_config", {})),
                     train_config=train, data=meta.get("data"), seed=int(train.get("seed", 0)),
                     best_epoch=int(res["best_epoch"]), valid=res.get("best_valid", {}),
                     test=res.get("test", {}), epochs_run=int(res.get("epochs_run", 0)),
                     seconds_per_epoch=float("nan") if spe is None else float(spe), curve=curve)


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders under ``paths``: a folder with ``run.json`` is one; any other
    folder is searched recursively (sorted, so the order is stable)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise NotADirectoryError(f"{p} is not a folder")
        if (p / "run.json").is_file():
            out.append(p)
        else:
            out.extend(sorted(q.parent for q in p.rglob("run.json")))
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def group_configs(records: Sequence[RunRecord]) -> dict[str, dict[str, list[RunRecord]]]:
    """``{model: {config_key: [runs by seed]}}``, configurations in order of first appearance."""
    out: dict[str, dict[str, list[RunRecord]]] = {}
    for r in records:
        out.setdefault(r.model, {}).setdefault(r.config_key, []).append(r)
    for configs in out.values():
        for runs in configs.values():
            runs.sort(key=lambda r: r.seed)
    return out


def _score(runs: Sequence[RunRecord], metric: str, select: str) -> float:
    vals = [r.valid.get(metric, float("nan")) for r in runs]
    if select == "first":
        vals = vals[:1]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else -math.inf


def select_config(configs: dict[str, list[RunRecord]], metric: str, select: str = "mean"
                  ) -> tuple[str, dict[str, float]]:
    """The chosen configuration and every configuration's score.

    Args:
        configs: ``{config_key: [runs sorted by seed]}`` of one model.
        metric: the validation metric, e.g. ``'recall@20'``.
        select: ``'mean'`` (mean over the seeds) or ``'first'`` (lowest seed).

    Returns:
        ``(config_key, {config_key: score})``; the first configuration wins ties.
    """
    if select not in ("mean", "first"):
        raise ValueError(f"select must be 'mean' or 'first', got {select!r}")
    scores = {k: _score(runs, metric, select) for k, runs in configs.items()}
    best = max(scores, key=lambda k: scores[k])          # max keeps the first of equals
    return best, scores


def _ms(values: Sequence[float]) -> dict[str, Any]:
    m, s = mean_std(values)
    return {"mean": m, "std": s, "values": list(values)}


def per_user_metrics(run: str | Path, data=None, split: str = "test",
                     keys: Sequence[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each evaluated user's metrics of a run's best model.

    Args:
        run: the run folder.
        data: the dataset (a spec or a loaded one; default: the run's own).
        split: ``'test'`` or ``'valid'``.
        keys: metrics to return (default: all of the run's ``ks``).

    Returns:
        ``(users [N], {key: values [N]})`` (see
        :meth:`~mmgraph.evaluation.Evaluator.evaluate_per_user`).
    """
    import torch

    from ..evaluation import Evaluator
    from ..train.runfolder import load_run
    model, data, meta = load_run(run, data)
    ks = tuple(meta.get("train_config", {}).get("ks", (10, 20)))
    ev = Evaluator(data, ks=ks)
    with torch.no_grad():
        out = model()
        users, vals = ev.evaluate_per_user(lambda u: model.score(u, out), split=split)
    keys = list(vals) if keys is None else list(keys)
    return users.numpy(), {k: vals[k].numpy() for k in keys}


def build_leaderboard(runs: Sequence[str | Path], baseline: str | None = None,
                      select: str = "mean", data=None, title: str | None = None,
                      expected: dict[str, int] | None = None) -> dict[str, Any]:
    """The leaderboard of a set of run folders (see the module doc).

    Args:
        runs: run folders (unfinished ones are counted, not used).
        baseline: model to test the others against (``None``: no tests).
        select: ``'mean'`` or ``'first'`` (see :func:`select_config`).
        data: the dataset for the per-user metrics (a loaded one saves loading
            it again; default: each run's own).
        title: a heading (default: the dataset).
        expected: ``{model: trials planned}`` (a sweep's), to report unfinished ones.

    Returns:
        a JSON-ready dict (``leaderboard.json``).
    """
    records, unfinished = [], []
    for p in runs:
        r = read_run(p)
        (records.append(r) if r is not None else unfinished.append(str(p)))
    if not records:
        raise ValueError("no finished run to rank" + (f" ({len(unfinished)} unfinished)"
                                                       if unfinished else ""))
    metrics = {r.train_config.get("valid_metric", "recall@20") for r in records}
    if len(metrics) > 1:
        raise ValueError(f"the runs were selected on different metrics ({', '.join(sorted(metrics))})")
    metric = metrics.pop()
    k = metric.partition("@")[2]
    grouped = group_configs(records)
    if baseline is not None:
        baseline = get_model_class(baseline).name
        if baseline not in grouped:
            raise ValueError(f"baseline {baseline!r} has no finished run (models: "
                             f"{', '.join(grouped)})")
    datasets = sorted({str(r.data) for r in records})
    board: dict[str, Any] = {
        "title": title or ", ".join(datasets), "data": datasets, "valid_metric": metric,
        "selection": select, "baseline": baseline,
        "protocol": ("per model, the configuration with the best validation "
                     f"{metric} ({'mean over seeds' if select == 'mean' else 'lowest seed'}); "
                     "test metrics at each run's best validation epoch, mean and sample std "
                     "over the configuration's seeds; p-values: paired t-test and Wilcoxon "
                     "signed-rank over test users (per-user metrics averaged over seeds)"),
        "models": [], "unfinished": unfinished}
    per_user: dict[str, dict[str, np.ndarray]] = {}
    user_ids: dict[str, np.ndarray] = {}
    test_keys = [f"recall@{k}", f"ndcg@{k}"]
    for model, configs in grouped.items():
        best, scores = select_config(configs, metric, select)
        chosen = configs[best]
        firsts = [runs[0].settings for runs in configs.values()]
        varying = [k for k in firsts[0] if any(f.get(k) != firsts[0][k] for f in firsts)]
        test_names = list(chosen[0].test)
        entry = {
            "model": model, "config": chosen[0].config(varying),
            "seeds": [r.seed for r in chosen], "runs": [str(r.path) for r in chosen],
            "trials": sum(len(v) for v in configs.values()), "configurations": len(configs),
            "score": scores[best],
            "valid": {metric: _ms([r.valid.get(metric, float("nan")) for r in chosen])},
            "test": {t: _ms([r.test.get(t, float("nan")) for r in chosen]) for t in test_names},
            "best_epoch": [r.best_epoch for r in chosen],
            "epochs_run": [r.epochs_run for r in chosen],
            "seconds_per_epoch": float(np.nanmean([r.seconds_per_epoch for r in chosen]))
            if any(math.isfinite(r.seconds_per_epoch) for r in chosen) else float("nan"),
            "candidates": [{"config": runs[0].config(varying), "score": scores[key],
                            "seeds": [r.seed for r in runs]} for key, runs in configs.items()],
        }
        if expected is not None and model in expected:
            entry["planned_trials"] = expected[model]
        board["models"].append(entry)
        if baseline is not None:
            sums: dict[str, np.ndarray] = {}
            for r in chosen:
                users, vals = per_user_metrics(r.path, data, "test", test_keys)
                if model in user_ids and not np.array_equal(user_ids[model], users):
                    raise ValueError(f"{r.path}: its test users differ from its other runs'")
                user_ids[model] = users
                for t in test_keys:
                    sums[t] = sums.get(t, 0) + vals[t]
            per_user[model] = {t: v / len(chosen) for t, v in sums.items()}
    if baseline is not None:
        base = per_user[baseline]
        for entry in board["models"]:
            m = entry["model"]
            if m == baseline:
                continue
            if not np.array_equal(user_ids[m], user_ids[baseline]):
                entry["vs_baseline"] = {"error": "evaluated on other users (another dataset?)"}
                continue
            entry["vs_baseline"] = {t: paired_tests(per_user[m][t], base[t]) for t in test_keys}
    return board


def _fmt(ms: dict[str, Any], digits: int = 4) -> str:
    m, s = ms["mean"], ms["std"]
    if m is None or not math.isfinite(m):
        return "-"
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if s is not None and math.isfinite(s) else "")


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "-"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def format_leaderboard(board: dict[str, Any]) -> str:
    """``leaderboard.md``: one row per model, best test ``valid_metric`` first."""
    metric = board["valid_metric"]
    k = metric.partition("@")[2]
    shown = [t for t in ("recall@10", f"recall@{k}", "ndcg@10", f"ndcg@{k}")]
    shown = list(dict.fromkeys(t for t in shown if any(t in e["test"] for e in board["models"])))
    base = board.get("baseline")
    head = (["model", "config", "seeds", "trials", f"valid {metric}"] + [f"test {t}" for t in shown]
            + ["s/epoch"] + ([f"vs {base}: p (t / Wilcoxon) {metric}"] if base else []))
    lines = [f"# Leaderboard: {board['title']}", "", board["protocol"] + ".", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = sorted(board["models"], key=lambda e: -(e["test"].get(metric, {}).get("mean") or -1))
    for e in rows:
        cfg = ", ".join(f"{a}={_short(v)}" for a, v in e["config"].items()) or "defaults"
        row = [e["model"], cfg, str(len(e["seeds"])), str(e["trials"]), _fmt(e["valid"][metric])]
        row += [_fmt(e["test"][t]) if t in e["test"] else "-" for t in shown]
        spe = e.get("seconds_per_epoch")
        row.append(f"{spe:.2f}" if spe is not None and math.isfinite(spe) else "-")
        if base:
            vs = e.get("vs_baseline", {}).get(metric)
            row.append("baseline" if e["model"] == base else
                       f"{_p(vs['p_ttest'])} / {_p(vs['p_wilcoxon'])} "
                       f"({'+' if vs['mean_diff'] >= 0 else ''}{vs['mean_diff']:.4f})"
                       if vs else "-")
        lines.append("| " + " | ".join(row) + " |")
    if board.get("unfinished"):
        lines += ["", f"{len(board['unfinished'])} run(s) unfinished, not ranked."]
    method = next((v[metric]["method"] for e in rows
                   for v in [e.get("vs_baseline", {})] if metric in v), None)
    if method:
        lines += ["", f"p-values: {method}; in brackets the mean per-user difference to "
                      f"{base}."]
    return "\n".join(lines) + "\n"


def _short(v: Any) -> str:
    from ..train.config import format_value
    return format_value(tuple(v) if isinstance(v, list) else v)


def plot_leaderboard(board: dict[str, Any], path: str | Path) -> Path:
    """Validation curves of the chosen configurations (per epoch, the mean over the
    seeds that reached it) and the test ``valid_metric`` with error bars (std over
    seeds), as a PNG."""
    from ..train.plots import plt
    metric = board["valid_metric"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    names, means, stds = [], [], []
    for e in board["models"]:
        curves = [read_run(p) for p in e["runs"]]
        by_epoch: dict[int, list[float]] = {}
        for r in curves:
            if r is not None:
                for ep, v in r.curve:
                    by_epoch.setdefault(ep, []).append(v)
        if by_epoch:
            eps = sorted(by_epoch)
            ax1.plot(eps, [float(np.mean(by_epoch[x])) for x in eps], label=e["model"])
        t = e["test"].get(metric)
        if t is not None:
            names.append(e["model"])
            means.append(t["mean"])
            stds.append(t["std"] if t["std"] is not None and math.isfinite(t["std"]) else 0.0)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(f"valid {metric} (mean over seeds)")
    ax1.legend(fontsize=8)
    ax2.bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue")
    ax2.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax2.set_ylabel(f"test {metric} (mean ± std over seeds)")
    fig.suptitle(board["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def write_leaderboard(board: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``leaderboard.json``, ``leaderboard.md`` and (with matplotlib)
    ``leaderboard.png`` into ``out_dir``, each atomically; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = to_json(board, indent=2) + "\n"
    atomic_write(out / "leaderboard.json", lambda f: f.write(text), binary=False)
    md = format_leaderboard(board)
    atomic_write(out / "leaderboard.md", lambda f: f.write(md), binary=False)
    paths = [out / "leaderboard.json", out / "leaderboard.md"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return paths
    tmp = out / "leaderboard.png.tmp"
    plot_leaderboard(board, tmp)
    tmp.replace(out / "leaderboard.png")
    return paths + [out / "leaderboard.png"]
