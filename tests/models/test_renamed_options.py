"""One vocabulary of option names: the old names keep working for one release
(Python keyword, attribute, CLI flag, stored runs and checkpoints), with a warning."""
import dataclasses
import json
import warnings

import pytest

import mmgraph.models  # noqa: F401
from mmgraph.cli import main
from mmgraph.models.base import MODELS, upgrade_options
from mmgraph.models.rearm import REARMConfig

VOCABULARY = {"temperature", "cl_weight", "trainable_features", "num_ui_layers", "num_ii_layers",
              "num_uu_layers"}
OLD_NAMES = {"cl_tmp", "cl_loss_weight", "train_features", "n_ii_layers", "n_uu_layers",
             "cl_temperature", "tau", "num_item_layers"}


def test_no_model_uses_an_old_name_and_every_rename_targets_a_field():
    for name, cls in MODELS.items():
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        assert not fields & OLD_NAMES, (name, fields & OLD_NAMES)
        for old, new in cls.config_class.renamed.items():
            assert new in fields and old not in fields, (name, old, new)
            assert new in VOCABULARY, (name, new)


def test_old_keyword_and_attribute_work_with_a_warning():
    with pytest.warns(DeprecationWarning) as caught:
        cfg = REARMConfig(cl_tmp=0.3, n_ii_layers=2)
    assert sorted(str(w.message).split(": ", 1)[1].split(" (")[0] for w in caught) == \
        ["option 'cl_tmp' is now 'temperature'", "option 'n_ii_layers' is now 'num_ii_layers'"]
    assert (cfg.temperature, cfg.num_ii_layers) == (0.3, 2)
    with pytest.warns(DeprecationWarning, match="'cl_loss_weight' is now 'cl_weight'"):
        assert cfg.cl_loss_weight == cfg.cl_weight
    with pytest.raises(ValueError, match="give only 'temperature'"):
        REARMConfig(cl_tmp=0.3, temperature=0.4)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cfg.nope
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataclasses.replace(cfg, temperature=0.5)      # new names: no warning
        REARMConfig()


def test_stored_options_upgrade_silently():
    lg = MODELS["lgmrec"].config_class
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert upgrade_options(lg, {"tau": 0.5, "alpha": 0.1}) == {"temperature": 0.5, "alpha": 0.1}


def test_cli_old_flag_says_so_and_old_run_records_open(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--model", "mgcn", "--data", "synthetic:tiny?image_dim=16&text_dim=8",
                 "--epochs", "1", "--cl-temperature", "0.3", "--num-mm-layers", "2",
                 "--out-dir", str(out), "--progress", "false"]) == 0
    err = capsys.readouterr().err
    assert "--cl-temperature is now --temperature" in err
    rec = json.loads((out / "run.json").read_text())
    assert rec["model_config"]["temperature"] == 0.3 and rec["model_config"]["num_ii_layers"] == 2
    # a run (and its checkpoints) recorded before the renames opens
    for name in ("run.json", "results.json"):
        r = json.loads((out / name).read_text())
        key = "model_config" if name == "run.json" else None
        if key:
            mc = r[key]
            mc["cl_temperature"] = mc.pop("temperature")
            mc["train_features"] = mc.pop("trainable_features")
            (out / name).write_text(json.dumps(r))
    import torch
    for name in ("best_model.pt", "checkpoint.pt"):
        ck = torch.load(out / name, weights_only=False)
        c = ck["model_key"]["config"]
        c["num_mm_layers"] = c.pop("num_ii_layers")
        torch.save(ck, out / name)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--ks", "20"]) == 0, capsys.readouterr().err
    assert main(["train", "--model", "mgcn", "--data", "synthetic:tiny?image_dim=16&text_dim=8",
                 "--epochs", "2", "--cl-temperature", "0.3", "--num-mm-layers", "2",
                 "--out-dir", str(out), "--resume", "--progress", "false"]) == 0, \
        capsys.readouterr().err
