"""Options several models share, checked across them: frozen features, config
validation, modality selection (unknown, none, any number), MMRec's defaults, multiple
negatives and device moves. Each model's own behaviour is in models/test_<model>.py,
the contract every model keeps in models/test_contract.py."""

import pytest
import torch
from model_helpers import I, U, make_batch, make_data_24x18, small_config, total

from mmgraph.data import build_hetero
from mmgraph.models.base import Batch
from mmgraph.models.bm3 import BM3, BM3Config
from mmgraph.models.freedom import FREEDOM, FREEDOMConfig
from mmgraph.models.grcn import GRCN, GRCNConfig
from mmgraph.models.lattice import LATTICE, LATTICEConfig
from mmgraph.models.lgmrec import LGMRec, LGMRecConfig
from mmgraph.models.mgcn import MGCN, MGCNConfig
from mmgraph.models.mmgcn import MMGCN, MMGCNConfig
from mmgraph.models.slmrec import SLMRec, SLMRecConfig
from mmgraph.models.vbpr import VBPR, VBPRConfig


# ------------------------------------------------------- BM3, VBPR, FREEDOM, LATTICE

@pytest.mark.parametrize("cls", [BM3, FREEDOM, LATTICE], ids=lambda c: c.name)
def test_frozen_features_are_buffers(cls, tiny):
    cfg = cls.config_class(trainable_features=False)
    model = cls(tiny, cfg)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("features") for n in names)
    assert not any(k.startswith("feat_") for k in model.state_dict())
    trained = cls(tiny)
    assert sum(p.numel() for p in trained.parameters()) > sum(p.numel() for p in model.parameters())


def test_config_validation():
    with pytest.raises(ValueError, match="dropout"):
        BM3Config(dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        FREEDOMConfig(dropout=-0.1)
    with pytest.raises(ValueError, match="graph_update"):
        LATTICEConfig(graph_update="never")
    with pytest.raises(ValueError, match="ui_adjacency"):
        LATTICEConfig(ui_adjacency="rw")
    with pytest.raises(ValueError, match="reg_weight"):
        VBPRConfig(reg_weight=-1.0)


def test_unknown_modality_is_rejected(data_12x9):
    for cls in [BM3, VBPR, FREEDOM, LATTICE]:
        with pytest.raises(ValueError, match=r"modalities \['audio'\] not in the data "
                                             r"\(available: \['image', 'text'\]\)"):
            cls(data_12x9, cls.config_class(modalities=("audio",)))


def test_models_that_need_features_reject_an_empty_selection(data_12x9):
    from mmgraph.models.mambarec import MambaRec, MambaRecConfig
    for cls in (VBPR, FREEDOM, LATTICE, MambaRec):
        cfg_cls = MambaRecConfig if cls is MambaRec else cls.config_class
        with pytest.raises(ValueError, match="needs at least one item modality feature"):
            cls(data_12x9, cfg_cls(modalities=()))


# ------------------------------------------------------ MMGCN, GRCN, SLMRec, MGCN, LGMRec

def test_defaults_match_mmrec():
    assert MMGCNConfig().num_layers == 3 and MMGCNConfig().latent_dim == 256
    assert GRCNConfig().num_routing == 3 and GRCNConfig().latent_dim == 64
    s = SLMRecConfig()
    assert (s.num_layers, s.temperature, s.ssl_task, s.dropout) == (3, 0.2, "FAC", 0.3)
    assert SLMRec.train_defaults["weight_decay"] == 1e-4 and not SLMRec.uses_negatives
    m = MGCNConfig()
    assert (m.num_ui_layers, m.num_ii_layers, m.knn_k, m.reg_weight, m.cl_weight) == \
        (2, 1, 10, 1e-4, 0.01)
    lg = LGMRecConfig()
    assert (lg.num_ui_layers, lg.num_mm_layers, lg.num_hyper_layers, lg.num_hyperedges,
            lg.keep_rate, lg.alpha, lg.cl_weight, lg.reg_weight) == \
        (2, 2, 1, 4, 0.5, 0.3, 1e-4, 1e-6)


@pytest.mark.parametrize("cls", [MMGCN, GRCN, MGCN, LGMRec])
def test_multiple_negatives(data_24x18, cls):
    torch.manual_seed(0)
    model = cls(data_24x18, small_config(cls))
    terms = model.loss(make_batch(model, num_neg=3), model())
    assert torch.isfinite(total(terms))


@pytest.mark.parametrize("cls", [MMGCN, GRCN, SLMRec, MGCN, LGMRec])
@pytest.mark.parametrize("mods", [("image",), ("audio", "image", "text")])
def test_any_number_of_modalities(cls, mods):
    d = make_data_24x18(mods, dims=(14, 10, 6)[:len(mods)])
    torch.manual_seed(0)
    model = cls(d, small_config(cls, project_modalities=()) if cls is MMGCN
                else small_config(cls))
    out = model()
    assert out.user.shape[0] == U and out.item.shape[0] == I
    loss = total(model.loss(make_batch(model), out))
    assert torch.isfinite(loss)
    loss.backward()


def test_config_errors(data_24x18):
    data = data_24x18
    with pytest.raises(ValueError, match="project_modalities"):
        MMGCN(data, MMGCNConfig(project_modalities=("video",)))
    with pytest.raises(ValueError, match="weight_mode"):
        GRCN(data, GRCNConfig(weight_mode="min"))
    with pytest.raises(ValueError, match="latent_dim == embedding_dim"):
        GRCN(data, GRCNConfig(fusion_mode="mean", latent_dim=32))
    with pytest.raises(ValueError, match="ssl_task"):
        SLMRec(data, SLMRecConfig(ssl_task="XYZ"))
    with pytest.raises(ValueError, match="keep_rate"):
        LGMRec(data, LGMRecConfig(keep_rate=0.0))
    with pytest.raises(TypeError):
        MGCN(data, LGMRecConfig())
    no_feat = build_hetero(3, 2, torch.tensor([[0, 1, 2], [0, 1, 1]]))
    for cls in (MMGCN, GRCN, SLMRec, MGCN, LGMRec):
        with pytest.raises(ValueError, match="modality"):
            cls(no_feat)
    model = MGCN(data, small_config(MGCN))
    with pytest.raises(ValueError, match="neg_items"):
        model.loss(Batch(torch.tensor([0]), torch.tensor([1])), model())


def test_models_follow_device_moves(data_24x18):
    """Graphs and buffers move with .to() (float64 here as a device-free stand-in)."""
    for cls in (MMGCN, GRCN, SLMRec, MGCN, LGMRec):
        torch.manual_seed(0)
        model = cls(data_24x18, small_config(cls)).double()
        out = model()
        assert out.user.dtype == torch.float64
