"""Import a script of examples/ or benchmarks/ as a module (``from scripts import load_script``;
tests/ is on sys.path through tests/conftest.py)."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(path: Path, name: str):
    """The module of the script at ``path``, registered as ``sys.modules[name]`` (dataclasses
    in it resolve their module there); the script's folder goes on ``sys.path`` first, so
    its sibling imports (``_common``, ``_upstream``) resolve."""
    folder = str(Path(path).parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
