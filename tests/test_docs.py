"""The docs' code runs: docs/adding_a_model.md defines, registers and trains a model."""
import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_adding_a_model_page_runs():
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "adding_a_model.md").read_text(), re.S)
    assert len(blocks) == 2
    check = ("\nfrom mmgraph.models.base import MODELS\n"
             "assert MODELS['feature_lightgcn'] is FeatureLightGCN\n"
             "assert 0.0 < result.test['recall@20'] <= 1.0\n"
             "assert sum('proj' in n for n, _ in model.named_parameters()) == 4\n")
    # a subprocess: registering a model must not leak into the suite's registry
    out = subprocess.run([sys.executable, "-c", "\n".join(blocks) + check], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
