"""Shared helpers of the benchmark scripts: machine description, timing, memory, results file.

    from _common import machine_info, timeit, PeakMemory, peak_rss_mb, append_results

* :func:`machine_info` -- one line describing CPU/GPU, threads, library versions, load;
* :func:`timeit` -- median wall time of ``fn()`` (CUDA-synchronised when needed);
* :func:`peak_rss_mb`, :func:`rss_mb`, :func:`reset_peak_rss`, :class:`PeakMemory` --
  peak extra memory of a block: resident-set high-water mark (sees torch's C++
  allocations), tracemalloc peak (Python/NumPy allocations) and CUDA peak;
* :func:`machine_peaks` -- achieved dense-matmul FLOP/s and copy bandwidth here;
* :func:`append_results` -- replace-or-append a ``## title`` section of
  ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Callable, Optional

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


# ------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def machine_info() -> str:
    """A one-line description of the machine and software (for result tables)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count()
    parts = [f"CPU: {_cpu_model()} ({cores} cores usable, torch threads {torch.get_num_threads()})"]
    mem = _mem_total_gb()
    if mem:
        parts.append(f"RAM {mem:.0f} GiB")
    if torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
    try:
        import torch_geometric
        pyg = torch_geometric.__version__
    except ImportError:  # pragma: no cover
        pyg = "-"
    try:
        import torch_geometric.typing as t
        ts = "yes" if t.WITH_TORCH_SPARSE else "no"
    except ImportError:  # pragma: no cover
        ts = "?"
    parts.append(f"torch {torch.__version__}, PyG {pyg}, torch-sparse {ts}, "
                 f"Python {platform.python_version()}")
    try:
        load = os.getloadavg()
        parts.append(f"load avg {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    except OSError:  # pragma: no cover
        pass
    return "; ".join(parts)


# ------------------------------------------------------------------- timing
def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timeit(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_with_batches(name: str, data, n: int, seed: int = 0):
    """A registered model with its library defaults, the trainer's own optimiser
    (fused Adam on CPU) and ``n`` training batches (several epochs on small data).

    Returns ``(model, optimiser, train config, [Batch] * n)``, the model in train mode.
    """
    import mmgraph.models  # noqa: F401  (registers every model)
    from mmgraph.models.base import get_model_class
    from mmgraph.sampling import InteractionLoader
    from mmgraph.train import Trainer, train_config_for
    cls = get_model_class(name)
    cfg = train_config_for(cls, progress=False, seed=seed)
    torch.manual_seed(seed)
    model = cls(data, cls.config_class())
    opt = Trainer(model, data, cfg)._make_optimizer()
    loader = InteractionLoader(data, batch_size=cfg.batch_size,
                               num_neg=1 if model.uses_negatives else 0,
                               generator=torch.Generator().manual_seed(seed))
    batches = []
    while len(batches) < n:
        batches.extend(loader)
    model.train()
    return model, opt, cfg, batches[:n]


def machine_peaks(gemm_shapes=((2048, 2048, 64), (2048, 64, 2048), (1500, 4096, 64))) -> dict:
    """Achieved dense-matmul FLOP/s (best of ``gemm_shapes`` ``(m, k, n)``, median of 5)
    and copy bandwidth (bytes read + written per second over 256 MiB) on this machine,
    with the current torch thread count: the ceilings a step's cost is divided by."""
    flops = 0.0
    for m, k, n in gemm_shapes:
        x, y = torch.randn(m, k), torch.randn(k, n)
        flops = max(flops, 2 * m * k * n / timeit(lambda: x @ y))
    src = torch.empty(2 ** 26)
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 4 / timeit(lambda: dst.copy_(src))
    return {"flops": flops, "bandwidth": bw}


# ------------------------------------------------------------------- memory
def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Current resident set size in MiB."""
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb / 1024
    import resource  # pragma: no cover - non-Linux fallback
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def peak_rss_mb() -> float:
    """Peak resident set size (high-water mark) in MiB since start or :func:`reset_peak_rss`."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    import resource  # pragma: no cover
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (Linux ``/proc/self/clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager measuring the peak *extra* memory of its block.

    Attributes after exit:
        rss_mb: peak resident set size above the level at entry (MiB); from the
            kernel's high-water mark when it can be reset, else from a 1 ms
            sampling thread (may miss very short spikes).
        traced_mb: tracemalloc peak of Python-level allocations (NumPy included).
        cuda_mb: CUDA peak allocated above the level at entry (0 without CUDA).
    """

    def __init__(self, trace_python: bool = True):
        self.trace_python = trace_python
        self.rss_mb = self.traced_mb = self.cuda_mb = 0.0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, rss_mb())
            time.sleep(0.001)

    def __enter__(self) -> "PeakMemory":
        import gc
        gc.collect()
        self._base = rss_mb()
        self._hwm = reset_peak_rss()
        if not self._hwm:
            self._max, self._stop = self._base, threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        if self.trace_python:
            tracemalloc.start()
        self._cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        if self._cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        if self._cuda:
            torch.cuda.synchronize()
            self.cuda_mb = (torch.cuda.max_memory_allocated() - self._cuda_base) / 2 ** 20
        if self.trace_python:
            self.traced_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
        if self._hwm:
            self.rss_mb = max(0.0, peak_rss_mb() - self._base)
        else:
            self._stop.set()
            self._thread.join()
            self.rss_mb = max(0.0, self._max - self._base)

    @property
    def peak_mb(self) -> float:
        """The largest of the three measurements."""
        return max(self.rss_mb, self.traced_mb, self.cuda_mb)


def measure_peak(fn: Callable[[], object]) -> tuple[object, PeakMemory]:
    """Run ``fn()`` once inside :class:`PeakMemory`; return ``(result, meter)``."""
    with PeakMemory() as m:
        out = fn()
    return out, m


# ------------------------------------------------------------------ results
def command_line() -> str:
    """The command that launched this script (for the results file)."""
    args = " ".join(sys.argv[1:])
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        pass
    return f"python {script} {args}".strip()


def append_results(section_title: str, markdown_text: str, path: Path | str = RESULTS) -> Path:
    """Replace the ``## section_title`` section of ``path`` (or append it) with ``markdown_text``.

    A section runs from its ``## `` heading to the next ``## `` heading (or the
    end of the file). The file is created with a top-level title if missing.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else "# mmgraph benchmark results\n"
    body = markdown_text.strip("\n")
    section = f"## {section_title}\n\n{body}\n"
    pattern = re.compile(rf"^## {re.escape(section_title)}[ \t]*\n.*?(?=^## |\Z)",
                         re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
        text = text.rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    return path


__all__ = ["machine_info", "timeit", "rss_mb", "peak_rss_mb", "reset_peak_rss", "PeakMemory",
           "measure_peak", "command_line", "append_results", "RESULTS"]
