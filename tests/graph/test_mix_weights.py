"""modality_mix_weights: the one rule FREEDOM and REARM mix their modality graphs by."""
import pytest

from mmgraph.graph import modality_mix_weights
from mmgraph.models.freedom import freedom_modality_weights


def test_rule_by_hand():
    assert modality_mix_weights(["image", "text"], 0.1) == {"image": 0.1, "text": 0.9}
    w = modality_mix_weights(["text", "image", "audio"], 0.2)
    assert w == {"text": 0.4, "image": 0.2, "audio": 0.4}
    assert modality_mix_weights(["text", "audio"], 0.2) == {"text": 0.5, "audio": 0.5}
    assert modality_mix_weights(["image"], 0.2) == {"image": 1.0}
    assert modality_mix_weights(["image", "text"], 0.3, {"image": 2, "text": 1}) == \
        {"image": 2.0, "text": 1.0}
    with pytest.raises(ValueError, match="no weight for \\['text'\\]"):
        modality_mix_weights(["image", "text"], 0.3, {"image": 1.0})
    with pytest.raises(ValueError, match="at least one modality"):
        modality_mix_weights([], 0.3)


def test_models_use_it():
    import mmgraph.models.rearm as rearm
    assert rearm.modality_mix_weights is modality_mix_weights
    assert freedom_modality_weights(["image", "text"]) == modality_mix_weights(["image", "text"], 0.1)
