"""The docs: docs/adding_a_model.md's code runs, every model has a page that documents
every option with the authors' names, and links resolve."""
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


# ------------------------------------------------------------------ model pages
MODEL_DOCS = DOCS / "models"
REPO = DOCS.parent
PAGE_SECTIONS = ("## Paper", "## Model", "## Options", "### Training defaults",
                 "## Differences from the authors' code", "## Parity / measured")


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = text.split("\n" + heading + "\n", 1)[1]
    stops = [m.start() for m in re.finditer(r"^#{1,%d} " % len(level), body, re.M)]
    return body[:stops[0]] if stops else body


def _table(section: str) -> dict[str, list[str]]:
    """``{name: cells}`` of the table rows whose first cell is a backticked name."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        m = re.fullmatch(r"`(\w+)`", cells[0]) if cells else None
        if m:
            rows[m.group(1)] = cells
    return rows


def _pages():
    import mmgraph.models  # noqa: F401  (registers the zoo)
    from mmgraph.models.base import MODELS
    return {name: cls for name, cls in MODELS.items() if cls.__module__.startswith("mmgraph.")}


def test_every_model_has_a_page_whose_options_table_covers_its_config():
    """docs/models/<name>.md for every registered model: the page's sections, every
    config field in its options table with the config's default, every old (renamed)
    option name among the authors' names of its new name's row, and the training
    defaults the model declares (with the values a run uses)."""
    import dataclasses

    from mmgraph.cli import effective_train_defaults
    from mmgraph.train.config import format_value
    pages = _pages()
    assert len(pages) >= 13
    for name, cls in pages.items():
        page = MODEL_DOCS / f"{name}.md"
        assert page.is_file(), f"no page docs/models/{name}.md"
        text = page.read_text()
        for heading in PAGE_SECTIONS:
            assert f"\n{heading}\n" in text, (name, heading)
        options = _table(_section(text, "## Options").split("\n### ", 1)[0])
        config = cls.config_class()
        for f in dataclasses.fields(config):
            assert f.name in options, f"docs/models/{name}.md: option {f.name!r} not in its table"
            cells = options[f.name]
            assert len(cells) == 4 and cells[1] and cells[3], (name, f.name, cells)
            default = f"`{format_value(getattr(config, f.name))}`"
            assert cells[2] == default, (name, f.name, cells[2], default)
        extra = set(options) - {f.name for f in dataclasses.fields(config)}
        assert not extra, f"docs/models/{name}.md documents options the config lacks: {extra}"
        for old, new in cls.config_class.renamed.items():
            assert f"`{old}`" in options[new][1], \
                f"docs/models/{name}.md: old name {old!r} not listed with {new!r}"
        training = _table(_section(text, "### Training defaults"))
        effective = effective_train_defaults(cls)
        for key in cls.train_defaults:
            assert key in training, f"docs/models/{name}.md: training default {key!r} missing"
        for key, cells in training.items():
            assert cells[2] == f"`{format_value(effective[key])}`", (name, key, cells[2])


def test_model_reference_links_every_page_and_pages_link_existing_sections():
    """docs/models/README.md (generated) links each page; every link of a page (and
    of docs/distributed.md) to a file exists, and its #anchor names a heading there."""
    reference = (MODEL_DOCS / "README.md").read_text()
    pages = [MODEL_DOCS / f"{name}.md" for name in _pages()]
    for page in pages:
        assert f"]({page.name})" in reference, page.name

    def slug(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    for page in pages + [DOCS / "distributed.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.is_file(), (page.name, target)
            if anchor:
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), re.M)
                assert anchor in {slug(h) for h in headings}, (page.name, target)


def test_docs_and_package_do_not_depend_on_private_material():
    """Nothing under docs/ or mmgraph/ cites the project's private spec or the shared
    folder beside the repository."""
    for root in (DOCS, REPO / "mmgraph"):
        for path in root.rglob("*"):
            if not path.is_file() or path.suffix not in (".py", ".md", ".txt", ".rst", ".toml",
                                                         ".yaml", ".yml", ".json", ".cfg"):
                continue
            text = path.read_text(errors="replace")
            for needle in ("MISSION.md", "../shared"):
                assert needle not in text, f"{path.relative_to(REPO)} mentions {needle}"
