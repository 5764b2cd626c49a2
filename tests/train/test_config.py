"""Configuration: every value is checked when the config is made (before any data loads),
and every CLI mistake is a one-line error."""
import dataclasses

import pytest
import torch

import mmgraph.cli as cli
from mmgraph.cli import main
from mmgraph.models.base import MODELS, ModelConfig
from mmgraph.train import TrainConfig

TRAIN = ["train", "--model", "lightgcn", "--data", "synthetic:tiny", "--progress", "false"]


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if the CLI gets as far as loading the data."""
    def refuse(*a, **k):
        raise AssertionError("the data was loaded before the option was checked")
    monkeypatch.setattr(cli, "load_dataset", refuse)


@pytest.mark.parametrize("argv,message", [
    (["--embedding-dim", "0"], "embedding_dim must be >= 1, got 0"),
    (["--reg-weight", "-5"], "reg_weight must be >= 0, got -5.0"),
    (["--num-layers", "-1"], "num_layers must be >= 0, got -1"),
    (["--lr-decay", "-1"], "lr_decay must be a finite number > 0"),
    (["--lr-decay", "0"], "lr_decay must be a finite number > 0"),
    (["--lr", "nan"], "lr must be a finite number >= 0, got nan"),
    (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0"),
    (["--valid-metric", "foo@20"], "valid_metric must be '<metric>@K' with metric one of "
                                   "recall, ndcg, precision, map and K one of ks=10,20, got 'foo@20'"),
    (["--valid-metric", "recall@50"], "K one of ks=10,20"),
    (["--device", "tpu"], "device must be one of cpu, cuda, cuda:N, got 'tpu'"),
    (["--optimizer", "sgd"], "--optimizer: expected one of adam, adamw, got 'sgd'"),
    (["--patience", "0"], "patience must be >= 1, got 0"),
    (["--num-neg", "-1"], "num_neg must be >= 0, got -1"),
])
def test_bad_options_fail_before_the_data_loads(argv, message, no_data, capsys):
    assert main(TRAIN + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(no_data, capsys):
    assert main(TRAIN + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda' requested but CUDA is not available" in err and err.count("\n") == 1


def test_genuine_bug_keeps_its_traceback(monkeypatch):
    """Only user mistakes become one-line errors: a bug (here a KeyError) propagates."""
    def buggy(*a, **k):
        raise KeyError("bug")
    monkeypatch.setattr(cli, "load_dataset", buggy)
    with pytest.raises(KeyError, match="bug"):
        main(TRAIN + ["--epochs", "1"])


def test_train_config_checks():
    for kw, msg in [(dict(lr_decay=-1.0), "lr_decay"), (dict(lr=-1e-3), "lr must be"),
                    (dict(valid_metric="foo@20"), "metric one of"), (dict(device="cuda:x"), "device"),
                    (dict(eval_every=0), "eval_every")]:
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw)
    TrainConfig(lr=0.0, valid_metric="ndcg@10", device="cuda:1")    # valid values are accepted


def test_every_model_config_checks_its_fields():
    """The range rules of ModelConfig (FIELD_RANGES) apply to every registered model's config,
    after the config's own __post_init__, and every default satisfies them."""
    for name, cls in MODELS.items():
        cfg_cls = cls.config_class
        cfg_cls()                                            # defaults are valid
        fields = {f.name for f in dataclasses.fields(cfg_cls)}
        with pytest.raises(ValueError, match="embedding_dim must be >= 1"):
            cfg_cls(embedding_dim=0)
        with pytest.raises(ValueError, match="reg_weight"):
            cfg_cls(reg_weight=-1.0)
        for f in ("knn_k", "num_layers", "num_ui_layers", "dropout", "temperature", "cl_weight"):
            if f in fields:
                bad = {"knn_k": 0, "num_layers": -1, "num_ui_layers": -1, "dropout": 1.5,
                       "temperature": 0.0, "cl_weight": -0.5}[f]
                with pytest.raises(ValueError, match=f"{f}.* must be"):
                    cfg_cls(**{f: bad})

    @dataclasses.dataclass
    class Mine(ModelConfig):                                 # a user's config gets them too
        feat_dim: int = 8

        def __post_init__(self):
            self.touched = True

    with pytest.raises(ValueError, match="feat_dim must be >= 1, got 0"):
        Mine(feat_dim=0)
    assert Mine().touched


# ----------------------------------------------------------------- what --help shows
def _help(monkeypatch, capsys, *argv):
    monkeypatch.setenv("COLUMNS", "2000")                   # one line per option
    with pytest.raises(SystemExit):
        main(["train", *argv, "--help"])
    return capsys.readouterr().out


def _shown_defaults(text):
    """{field: (description, allowed values, default)} from --help (an option's help may
    start on the line after a long option string)."""
    import re
    entries, cur = [], None
    for line in text.splitlines():
        if re.match(r"  --", line):
            cur = [line.strip()]
            entries.append(cur)
        elif cur is not None and line.startswith("   ") and line.strip():
            cur.append(line.strip())
        else:
            cur = None
    out = {}
    for e in entries:
        m = re.match(r"--([a-z0-9-]+)(?: \S+)?\s+(.*)\. Values: (.*)\. Default: (.*)$", " ".join(e))
        if m:
            out[m.group(1).replace("-", "_")] = (m.group(2), m.group(3), m.group(4))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_help_defaults_are_what_a_run_uses(name, tmp_path, monkeypatch, capsys):
    """For every registered model, each default `train --model M --help` shows equals the
    effective configuration the run records (run.json / results.json), and `mmgraph models`
    shows the same training settings."""
    import json
    from mmgraph.train.config import field_descriptions, format_value
    cls = MODELS[name]
    shown = _shown_defaults(_help(monkeypatch, capsys, "--model", name))
    fields = [f.name for f in dataclasses.fields(TrainConfig)] + \
        [f.name for f in dataclasses.fields(cls.config_class)]
    assert set(fields) <= set(shown), set(fields) - set(shown)
    assert shown["out_dir"][2] == f"runs/{name}"
    out = tmp_path / "run"
    given = {"epochs": "1", "progress": "false", "out_dir": str(out), "batch_size": "1024"}
    assert main(["train", "--model", name, "--data", "synthetic:tiny",
                 *[a for k, v in given.items() for a in (f"--{k.replace('_', '-')}", v)]]) == 0
    capsys.readouterr()
    run = json.loads((out / "run.json").read_text())
    recorded = {**json.loads((out / "results.json").read_text())["train_config"],
                **run["model_config"]}
    assert run["train_config"] == json.loads((out / "results.json").read_text())["train_config"]
    for f in fields:
        if f not in given:
            assert shown[f][2] == format_value(recorded[f]), (name, f)
    # every option: a one-line description from the docstring, and its allowed values
    docs = {**field_descriptions(TrainConfig), **field_descriptions(cls.config_class)}
    for f in fields:
        desc, allowed, _ = shown[f]
        assert desc == docs[f] and desc and allowed, (name, f)
    # mmgraph models prints the same training settings for the model
    assert main(["models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    row = listing[listing.index(next(l for l in listing if l.startswith(f"{name} "))) + 1]
    train_fields = [f.name for f in dataclasses.fields(TrainConfig)]
    base = TrainConfig()
    for f in train_fields:
        if f not in given and recorded[f] != format_value(getattr(base, f)) and \
                format_value(recorded[f]) != format_value(getattr(base, f)):
            assert f"{f}={format_value(recorded[f])}" in row, (name, f, row)


def test_no_placeholder_metavars(monkeypatch, capsys):
    import re
    for name in sorted(MODELS):
        text = _help(monkeypatch, capsys, "--model", name)
        metavars = set(re.findall(r"\[--[\w-]+ \[?([^\]\s]+)\]?\]", text.split("\n\n")[0]))
        assert metavars and not metavars & {"UNION", "OPTIONAL", "VALUE", "MAPPING", "DICT"}, name
    text = _help(monkeypatch, capsys)                         # without --model
    assert "Default: runs/<model>" in text


# ----------------------------------------------------------------- reading typed values
@pytest.mark.parametrize("model,argv,field,value", [
    ("lightgcn", ["--num-layers", "2"], "num_layers", 2),                          # int
    ("lightgcn", ["--reg-weight", "1e-3"], "reg_weight", 1e-3),                    # float
    ("mambarec", ["--use-dream"], "use_dream", True),                              # bool, bare
    ("mambarec", ["--use-dream", "false"], "use_dream", False),                    # bool, value
    ("mambarec", ["--dream-attention", "paper"], "dream_attention", "paper"),      # str
    ("mambarec", ["--dream-dilations", "1,2"], "dream_dilations", (1, 2)),        # tuple[int]
    ("mambarec", ["--dream-dilations", "[3, 4]"], "dream_dilations", (3, 4)),     # JSON list
    ("mambarec", ["--mmd-sigmas", "1,1.5"], "mmd_sigmas", (1.0, 1.5)),            # tuple[float]
    ("mambarec", ["--modalities", "image"], "modalities", ("image",)),             # tuple[str]|None
    ("mambarec", ["--modalities", "none"], "modalities", None),
    ("mambarec", ["--reduction", "4"], "reduction", 4),                            # int|Mapping|None
    ("mambarec", ["--reduction", "image=8,text=none"], "reduction", {"image": 8, "text": None}),
    ("mambarec", ["--reduction", '{"image": 8, "text": null}'], "reduction",
     {"image": 8, "text": None}),
    ("mambarec", ["--reduction", "none"], "reduction", None),
    ("freedom", ["--modality-weights", "image=0.1,text=0.9"], "modality_weights",  # Mapping|None
     {"image": 0.1, "text": 0.9}),
    ("freedom", ["--modality-weights", '{"image": 0.25, "text": 0.75}'], "modality_weights",
     {"image": 0.25, "text": 0.75}),
])
def test_every_option_type_reads_from_the_command_line(model, argv, field, value):
    cls = MODELS[model]
    args = cli._train_parser(model).parse_args(["--model", model, *argv])
    over = cli.dataclass_overrides(args, cls.config_class)
    assert over == {field: value}
    assert getattr(cls.config_class(**over), field) == value


def test_train_option_types_read(monkeypatch):
    args = cli._train_parser("lightgcn").parse_args(
        ["--model", "lightgcn", "--optimizer", "adamw", "--amp", "bf16", "--ks", "5,10",
         "--valid-metric", "ndcg@10", "--resume", "--threads", "3", "--out-dir", "none"])
    over = cli.dataclass_overrides(args, TrainConfig)
    assert over == {"optimizer": "adamw", "amp": "bf16", "ks": (5, 10), "valid_metric": "ndcg@10",
                    "resume": True, "threads": 3, "out_dir": None}


@pytest.mark.parametrize("argv,message", [
    (["--reduction", "image=x"], "--reduction: cannot read 'image=x' as"),
    (["--reduction", "{bad json"], "--reduction: cannot read"),
    (["--mmd-sigmas", "a,b"], "--mmd-sigmas: cannot read 'a' as float"),
])
def test_bad_typed_values_are_one_line_errors(argv, message, no_data, capsys):
    assert main(["train", "--model", "mambarec", "--data", "synthetic:tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_mapping_option_reaches_the_model(tmp_path, capsys):
    import json
    out = tmp_path / "r"
    assert main(["train", "--model", "mambarec", "--data", "synthetic:tiny", "--epochs", "1",
                 "--progress", "false", "--out-dir", str(out), "--num-ui-layers", "1",
                 "--reduction", "image=8,text=none"]) == 0
    assert json.loads((out / "run.json").read_text())["model_config"]["reduction"] == \
        {"image": 8, "text": None}
    capsys.readouterr()
    assert main(["evaluate", str(out), "--ks", "20"]) == 0      # the run opens again


# ----------------------------------------------------------------- threads
def test_threads_option(tiny, monkeypatch):
    from mmgraph.models import BPRMF
    from mmgraph.train import Trainer
    seen = []

    class Probe(BPRMF):
        def on_epoch_start(self, epoch):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    Trainer(Probe(tiny), tiny, TrainConfig(epochs=2, progress=False, threads=2)).fit()
    assert seen == [2, 2] and torch.get_num_threads() == before        # restored after fit
    with pytest.raises(ValueError, match="threads must be >= 1"):
        TrainConfig(threads=0)
    # the CLI sets it before the data loads (graph building uses it too)
    loaded = []
    monkeypatch.setattr(cli, "load_dataset", lambda *a: loaded.append(torch.get_num_threads())
                        or (_ for _ in ()).throw(ValueError("stop here")))
    try:
        assert main(TRAIN + ["--threads", "3", "--out-dir", "none"]) == 2
        assert loaded == [3]
    finally:
        torch.set_num_threads(before)
