"""Learning curves (needs matplotlib: ``pip install mmgraph[plot]``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: list[dict[str, Any]], path: str | Path,
                 metric: str = "recall@20", title: str | None = None) -> Path:
    """Training loss, and validation and test ``metric``, per epoch, side by side, as a PNG."""
    path = Path(path)
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [h["loss"] for h in history], color="tab:blue")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ev = [(h["epoch"], h["valid"][metric]) for h in history if "valid" in h]
    if ev:
        ax2.plot(*zip(*ev), color="tab:green", label=f"valid {metric}")
        tests = [(h["epoch"], h["test"][metric]) for h in history if "test" in h]
        if tests:
            ax2.plot(*zip(*tests), color="tab:red", label=f"test {metric}")
        best = [(h["epoch"], h["valid"][metric]) for h in history if h.get("improved")]
        if best:
            ax2.scatter(*zip(*best), color="tab:green", s=12, label="new best (valid)")
        ax2.legend()
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(metric)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: str | Path,
                metric: str = "recall@20", title: str | None = None) -> Path:
    """Validation ``metric`` per epoch of several runs in one PNG (one line per
    run, its best epoch marked), e.g. models compared on the same data."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, history in histories.items():
        ev = [(h["epoch"], h["valid"][metric]) for h in history if "valid" in h]
        if not ev:
            continue
        line, = ax.plot(*zip(*ev), label=name)
        best = max(ev, key=lambda e: e[1])
        ax.scatter([best[0]], [best[1]], color=line.get_color(), s=30, zorder=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"valid {metric}")
    ax.legend(title="dot: best epoch")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
