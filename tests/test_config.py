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
