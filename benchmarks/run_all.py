"""Run every throughput benchmark in benchmarks/ and print a summary.

    python benchmarks/run_all.py [--quick] [--device cuda] [--only a,b] [--skip a,b]
                                 [--timeout SECONDS] [--threads N]

Each script runs as its own subprocess (fresh interpreter, clean memory
peaks) in this order:

    propagation.py, knn_graph.py, train_epoch.py, mmrec_forms.py, mambarec_epoch.py, zoo.py,
    scaling.py

and rewrites its own ``## ...`` section of ``benchmarks/RESULTS.md`` (through
``_common.append_results``); scripts that are not there yet are skipped.
``--quick`` is passed to the scripts that have such an option
(``train_epoch.py`` runs 1 epoch instead, ``mambarec_epoch.py`` times 10
batches and extrapolates); note that most scripts then rewrite their usual
section with the smoke-test numbers (``scaling.py`` writes a separate
``(quick)`` section). ``--device`` goes to the scripts that have a
``--device`` option (the others run on their default, which the summary
says). The summary lists each script's status, wall time, the RESULTS.md
sections it changed and its last output line. Exit status: 0 when no script
failed.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, machine_info  # noqa: E402

SCRIPTS = ("propagation.py", "knn_graph.py", "train_epoch.py", "mmrec_forms.py",
           "mambarec_epoch.py", "zoo.py", "scaling.py")
#: extra arguments in --quick mode for scripts without a --quick option
QUICK_FALLBACK = {"train_epoch.py": ["--epochs", "1"],
                  "mmrec_forms.py": ["--batches", "3"],
                  "mambarec_epoch.py": ["--our-batches", "10", "--ref-batches", "1",
                                        "--mem-batches", "1"]}


def _sections(path: Path) -> dict[str, str]:
    """``{title: body}`` of the ``## `` sections of RESULTS.md."""
    if not path.exists():
        return {}
    text = path.read_text()
    parts = re.split(r"^## (.+?)[ \t]*$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _has_option(source: str, option: str) -> bool:
    return re.search(rf"""["']{re.escape(option)}["']""", source) is not None


def command_for(script: Path, quick: bool, device: str | None, threads: int | None
                ) -> tuple[list[str], list[str]]:
    """(command, notes) for one script, using only the options it declares."""
    src = script.read_text()
    cmd, notes = [sys.executable, str(script)], []
    if quick:
        if _has_option(src, "--quick"):
            cmd.append("--quick")
        elif script.name in QUICK_FALLBACK:
            cmd += QUICK_FALLBACK[script.name]
        else:
            notes.append("no --quick option: full run")
    if device:
        if _has_option(src, "--device"):
            cmd += ["--device", device]
        else:
            notes.append(f"no --device option: ran on its default, not {device}")
    if threads and _has_option(src, "--threads"):
        cmd += ["--threads", str(threads)]
    return cmd, notes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the scripts' quick variants")
    p.add_argument("--device", default=None, help="e.g. cuda (passed where supported)")
    p.add_argument("--only", default=None, help="comma list of script names (with or without .py)")
    p.add_argument("--skip", default=None, help="comma list of script names to leave out")
    p.add_argument("--timeout", type=float, default=None, help="seconds per script")
    p.add_argument("--threads", type=int, default=None, help="passed as --threads where supported")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a = p.parse_args(argv)

    def names(arg):
        return {n if n.endswith(".py") else n + ".py" for n in arg.split(",")} if arg else None

    only, skip = names(a.only), names(a.skip) or set()
    unknown = sorted(((only or set()) | skip) - set(SCRIPTS))
    if unknown:
        p.error(f"unknown script(s) {unknown}; known: {', '.join(SCRIPTS)}")
    print(machine_info(), flush=True)
    rows = []
    for name in SCRIPTS:
        if (only is not None and name not in only) or name in skip:
            continue
        script = HERE / name
        if not script.is_file():
            rows.append((name, "skipped (absent)", 0.0, "", ""))
            continue
        cmd, notes = command_for(script, a.quick, a.device, a.threads)
        if a.dry_run:
            print(" ".join(cmd) + (f"   # {'; '.join(notes)}" if notes else ""))
            continue
        print(f"\n=== {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}",
              flush=True)
        before = _sections(RESULTS)
        t0 = time.perf_counter()
        tail: list[str] = []
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, cwd=HERE.parent)
            killed = threading.Event()

            def kill():
                killed.set()
                proc.kill()

            timer = threading.Timer(a.timeout, kill) if a.timeout else None
            if timer is not None:
                timer.start()
            for line in proc.stdout:                      # stream the script's output
                print("  " + line, end="", flush=True)
                tail = (tail + [line.rstrip()])[-20:]
            rc = proc.wait()
            if timer is not None:
                timer.cancel()
            status = ("timeout" if killed.is_set() else "ok" if rc == 0 else f"failed (rc {rc})")
        except OSError as e:
            status, tail = f"failed ({e})", []
        secs = time.perf_counter() - t0
        after = _sections(RESULTS)
        changed = [t for t in after if before.get(t) != after[t]]
        last = next((l for l in reversed(tail) if l.strip()), "")
        if notes:
            status += "; " + "; ".join(notes)
        rows.append((name, status, secs, "; ".join(changed) or "-", last))

    if a.dry_run:
        return 0
    print("\n## summary\n")
    print("| script | status | seconds | RESULTS.md sections updated | last output line |")
    print("|---|---|---:|---|---|")
    for name, status, secs, changed, last in rows:
        print(f"| {name} | {status} | {secs:.0f} | {changed} | {last[:100]} |")
    return 1 if any(r[1].startswith(("failed", "timeout")) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
