"""Why MambaRec's BPR loss stalls at ln 2 with the authors' initialisation, and the fix.

    python benchmarks/mambarec_plateau.py [--data synthetic:baby_small] [--epochs 40]
        [--ratio-data synthetic:tiny,synthetic:baby_small,synthetic:baby] [--no-write]

Two measurements, both in one run:

1. **Gradient balance at initialisation.** For each dataset of
   ``--ratio-data`` and each ID-embedding initialisation, the norm of the
   gradient that the contrastive term (``cl``: 0.01 x InfoNCE between the
   modality view and the user-item view) and the BPR term send into the
   user and item ID tables, on one batch of 2048. InfoNCE compares
   L2-normalised rows, so its gradient grows like ``1 / ||e||``; BPR's
   shrinks like ``||e||``. Xavier-uniform on an ``[N, 64]`` table has a
   bound of ``sqrt(6 / (N + 64))``: the more users or items, the smaller the
   embeddings and the more the contrastive term dominates. Adam divides
   every coordinate by the running RMS of the *summed* gradient, so BPR's
   step shrinks by that ratio.
2. **Training curves** on ``--data`` for ``--epochs`` epochs (no early
   stopping) of four settings: the authors' initialisation
   (``embedding_init='xavier'``), the same without the contrastive term
   (``cl_weight=0``), the library default (``embedding_init='normal'``, std
   0.1: a per-entry scale independent of the table size), and the authors'
   initialisation with the contrastive loss over distinct ids
   (``cl_distinct_ids=True``: the repeated-ids hypothesis). Per epoch: the BPR term and validation
   Recall@20. Plot: ``benchmarks/mambarec_plateau.png``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import append_results, command_line, machine_info  # noqa: E402

from mmgraph.data import load_dataset  # noqa: E402
from mmgraph.models.mambarec import MambaRec, MambaRecConfig  # noqa: E402
from mmgraph.sampling import InteractionLoader  # noqa: E402
from mmgraph.train import Trainer, train_config_for  # noqa: E402

SETTINGS = {
    "authors (xavier)": dict(embedding_init="xavier"),
    "xavier, cl_weight 0": dict(embedding_init="xavier", cl_weight=0.0),
    "default (normal 0.1)": dict(),
    "xavier + distinct ids": dict(embedding_init="xavier", cl_distinct_ids=True),
}


def gradient_balance(spec: str, seed: int = 0) -> list[dict]:
    data = load_dataset(spec)
    batch = next(iter(InteractionLoader(data, batch_size=2048, num_neg=1,
                                        generator=torch.Generator().manual_seed(seed))))
    rows = []
    for init in ("xavier", "normal"):
        torch.manual_seed(seed)
        m = MambaRec(data, MambaRecConfig(embedding_init=init))
        m.train()
        out = m()
        terms = m.loss(batch, out)
        tables = [m.user_emb.weight, m.item_emb.weight]
        g = {k: torch.autograd.grad(terms[k], tables, retain_graph=True) for k in ("bpr", "cl")}
        rows.append({"data": spec, "users": m.num_users, "items": m.num_items, "init": init,
                     "row_norm": float(m.user_emb.weight.detach().norm(dim=1).mean()),
                     "ratio_users": float(g["cl"][0].norm() / g["bpr"][0].norm()),
                     "ratio_items": float(g["cl"][1].norm() / g["bpr"][1].norm())})
    return rows


def curves(spec: str, epochs: int, seed: int = 999) -> dict:
    data = load_dataset(spec)
    out = {}
    for name, over in SETTINGS.items():
        torch.manual_seed(seed)
        model = MambaRec(data, MambaRecConfig(**over))
        cfg = train_config_for(MambaRec, epochs=epochs, patience=epochs, seed=seed, progress=False)
        t0 = time.perf_counter()
        res = Trainer(model, data, cfg).fit()
        out[name] = {"bpr": [h["terms"]["bpr"] for h in res.history],
                     "recall": [h["valid"]["recall@20"] for h in res.history],
                     "test_at_best": res.test.get("recall@20"), "best_epoch": res.best_epoch,
                     "seconds": time.perf_counter() - t0}
        r = out[name]
        print(f"{name:24s} BPR {r['bpr'][0]:.4f} -> {r['bpr'][-1]:.4f}; valid R@20 epoch 1 "
              f"{r['recall'][min(1, epochs - 1)]:.4f}, min after {min(r['recall'][1:] or [0]):.4f}, "
              f"last {r['recall'][-1]:.4f}; best epoch {r['best_epoch']}", flush=True)
    return out


def plot(results: dict, path: Path, spec: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, r in results.items():
        a1.plot(r["bpr"], label=name)
        a2.plot(r["recall"], label=name)
    a1.set_xlabel("epoch")
    a1.set_ylabel("BPR term (training mean)")
    a1.axhline(0.6931, color="grey", lw=0.8, ls="--")
    a2.set_xlabel("epoch")
    a2.set_ylabel("valid Recall@20")
    a2.legend(fontsize=8)
    fig.suptitle(f"MambaRec on {spec}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic:baby_small")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--ratio-data", default="synthetic:tiny,synthetic:baby_small,synthetic:baby")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = [r for spec in a.ratio_data.split(",") if spec for r in gradient_balance(spec)]
    print("| data | users | items | init | mean row norm | cl / bpr gradient, users | items |")
    print("|---|---:|---:|---|---:|---:|---:|")
    lines = [f"| {r['data']} | {r['users']:,} | {r['items']:,} | {r['init']} | {r['row_norm']:.3f} | "
             f"{r['ratio_users']:.1f} | {r['ratio_items']:.1f} |" for r in rows]
    print("\n".join(lines))
    res = curves(a.data, a.epochs) if a.epochs > 0 else {}
    if a.no_write or not res:
        return 0
    png = HERE / "mambarec_plateau.png"
    plot(res, png, a.data)
    table = "\n".join(
        f"| {n} | {r['bpr'][0]:.4f} | {r['bpr'][-1]:.4f} | {r['recall'][1]:.4f} | "
        f"{min(r['recall'][1:]):.4f} | {r['recall'][-1]:.4f} | {r['best_epoch']} | {r['test_at_best']:.4f} |"
        for n, r in res.items())
    md = f"""Command: `{command_line()}`

Machine: {machine_info()}

Gradient norms sent into the ID tables at initialisation by the contrastive term (0.01 x
InfoNCE) and by BPR, one batch of 2048:

| data | users | items | init | mean row norm | cl / bpr gradient, users | items |
|---|---:|---:|---|---:|---:|---:|
{chr(10).join(lines)}

Training on {a.data}, {a.epochs} epochs, no early stopping ([plot](mambarec_plateau.png)):

| setting | BPR epoch 0 | BPR last | valid R@20 epoch 1 | min after | last | best epoch | test R@20 at best |
|---|---:|---:|---:|---:|---:|---:|---:|
{table}
"""
    append_results("MambaRec: the BPR plateau and the initialisation", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
