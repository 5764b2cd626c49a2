"""In-batch InfoNCE and MMD over a batch's distinct ids (CPU) against the [B, B] form.

    python benchmarks/repeated_ids.py [--data synthetic:baby_small] [--models mambarec,mgcn]
                                      [--threads 1] [--batches 12] [--reps 3] [--no-write]

A batch of 2048 interactions repeats users and items (4,000 users x 1,500
items: ~1,500 distinct users and ~900 distinct positive items per batch).
MambaRec's and MGCN's contrastive terms and MambaRec's MMD are functions of
rows gathered by id, so :func:`mmgraph.losses.info_nce` and
:func:`mmgraph.losses.mmd_loss` (given ``ids``) compute them on CPU over the
``K`` distinct rows with multiplicities as weights: ``[K, K]`` instead of
``[B, B]`` logits and kernels, the same values and gradients.

Side by side in one process, same model, same batches, interleaved
repetitions of a whole pass over ``--batches`` training steps (forward, loss,
backward, the trainer's fused Adam):

* **[B, B]** (the baseline): the compaction switched off
  (``mmgraph.losses._compactable`` patched to ``False``, i.e. what the
  library computes on a GPU);
* **distinct rows**: the library's CPU path.

Checks: on the first batch both forms give every loss term equal to 1e-5
(relative) and the same gradient on every parameter (1e-4 relative + 1e-7
absolute). Prints the median ms per step of each form and their ratio, and
the distinct users / items per batch; appends the table to
``benchmarks/RESULTS.md`` unless ``--no-write``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (append_results, command_line, machine_info,  # noqa: E402
                     model_with_batches)

import mmgraph.losses as losses_mod  # noqa: E402
from mmgraph.data import load_dataset  # noqa: E402
from mmgraph.train.allocator import tuned_malloc  # noqa: E402

FORMS = ("[B, B]", "distinct rows")


def _set_form(form: str, original) -> None:
    losses_mod._compactable = original if form == "distinct rows" else (lambda *_: False)


def _terms_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    terms = model.loss(batch, model())
    sum(terms.values()).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return {k: float(v.detach()) for k, v in terms.items()}, grads


def measure(name: str, data, batches: int, reps: int, seed: int) -> dict:
    model, opt, cfg, bs = model_with_batches(name, data, batches, seed)
    original = losses_mod._compactable
    checked = {}
    try:
        # the same dropout masks for both forms: the same generator state before each
        for form in FORMS:
            _set_form(form, original)
            torch.manual_seed(seed + 1)
            checked[form] = _terms_and_grads(model, bs[0])
        (t0, g0), (t1, g1) = checked[FORMS[0]], checked[FORMS[1]]
        for k in t0:
            if abs(t0[k] - t1[k]) > 1e-5 * max(1.0, abs(t0[k])):
                raise SystemExit(f"{name}: loss term {k!r} differs: {t0[k]} vs {t1[k]}")
        for k in g0:
            # absolute floor: biases ahead of a normalisation have gradients of ~1e-10,
            # zero up to rounding, which the two summation orders round differently
            if (g0[k] - g1[k]).abs().max().item() > 1e-4 * g0[k].abs().max().item() + 1e-7:
                raise SystemExit(f"{name}: gradient of {k} differs between the forms")

        def step(b):
            loss = sum(model.loss(b, model()).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        times = {f: [] for f in FORMS}
        with tuned_malloc():
            for b in bs[:2]:                                   # warm-up
                step(b)
            for _ in range(reps):
                for form in FORMS:
                    _set_form(form, original)
                    t = time.perf_counter()
                    for b in bs:
                        step(b)
                    times[form].append((time.perf_counter() - t) / len(bs))
    finally:
        losses_mod._compactable = original
    users = [b.users.unique().numel() for b in bs]
    items = [b.pos_items.unique().numel() for b in bs]
    return {"model": name, "batch_size": cfg.batch_size, "terms": sorted(t0),
            "users": statistics.median(users), "items": statistics.median(items),
            **{f: statistics.median(v) for f, v in times.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic:baby_small")
    p.add_argument("--models", default="mambarec,mgcn")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, default=12, help="training steps per timed pass")
    p.add_argument("--reps", type=int, default=3, help="interleaved passes per form (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if min(a.batches, a.reps, a.threads) < 1:
        p.error("--batches, --reps and --threads must be >= 1")
    torch.set_num_threads(a.threads)
    info = machine_info()
    print(info)
    data = load_dataset(a.data)
    rows = []
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        r = measure(name, data, a.batches, a.reps, a.seed)
        rows.append(r)
        print(f"{name}: [B, B] {r[FORMS[0]] * 1e3:.0f} ms/step, distinct rows "
              f"{r[FORMS[1]] * 1e3:.0f} ms/step ({r[FORMS[0]] / r[FORMS[1]]:.2f}x); terms "
              f"{', '.join(r['terms'])} equal", flush=True)
    head = ("| model | batch | distinct users / items per batch (median) | [B, B] ms / step | "
            "distinct rows ms / step | speed-up |")
    lines = [head, "|" + "---|" * 6]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['users']:.0f} / {r['items']:.0f} | "
                     f"{r[FORMS[0]] * 1e3:.0f} | {r[FORMS[1]] * 1e3:.0f} | "
                     f"{r[FORMS[0]] / r[FORMS[1]]:.2f}x |")
    table = "\n".join(lines)
    print("\n" + table)
    if not a.no_write:
        text = (f"Command: `{command_line()}`\n\nMachine: {info}\n\nData: {a.data}. Median over "
                f"{a.reps} interleaved passes of {a.batches} training steps per form; loss terms "
                f"and gradients of the first batch equal between the forms.\n\n{table}\n")
        append_results("In-batch InfoNCE and MMD over distinct ids (CPU)", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
