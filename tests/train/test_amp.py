"""Mixed-precision option of the trainer: configuration errors and a CPU bf16 run."""
import math

import pytest
import torch

from mmgraph.models import BPRMF, LightGCN, LightGCNConfig
from mmgraph.train import Trainer, TrainConfig
from mmgraph.train.trainer import amp_dtype
from marks import requires_cuda


def _cfg(**kw):
    base = dict(epochs=1, batch_size=512, progress=False, lr=5e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_amp_config_errors(tiny):
    with pytest.raises(ValueError, match="amp must be None, 'bf16' or 'fp16'"):
        TrainConfig(amp="float16")
    with pytest.raises(ValueError, match="amp='fp16' .* needs a CUDA device"):
        Trainer(BPRMF(tiny), tiny, _cfg(amp="fp16"))
    with pytest.raises(ValueError, match="not on device 'meta'"):
        amp_dtype("bf16", "meta")
    assert amp_dtype(None, "cpu") is None
    assert amp_dtype("bf16", "cpu") is torch.bfloat16
    if torch.cuda.is_available():
        assert amp_dtype("fp16", "cuda") is torch.float16


def test_amp_cli_error(capsys):
    from mmgraph.cli import main
    rc = main(["train", "--model", "bprmf", "--data", "synthetic:tiny", "--epochs", "1",
               "--amp", "fp16", "--progress", "false", "--out-dir", ""])
    assert rc == 2 and "needs a CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--model", "bprmf", "--amp"])


def test_amp_is_not_resumable(tiny, tmp_path):
    Trainer(BPRMF(tiny), tiny, _cfg(out_dir=str(tmp_path))).fit()
    with pytest.raises(ValueError, match=r"config changed in amp \(None -> 'bf16'\)"):
        Trainer(BPRMF(tiny), tiny, _cfg(out_dir=str(tmp_path), epochs=2, amp="bf16",
                                        resume=True)).fit()


def test_bf16_cpu_training_close_to_fp32(tiny):
    """Dense model (no sparse propagation): bf16 autocast trains, losses near fp32."""
    runs = {}
    for amp in (None, "bf16"):
        torch.manual_seed(0)
        runs[amp] = Trainer(BPRMF(tiny), tiny, _cfg(epochs=2, amp=amp)).fit()
    lo, hi = runs[None].history, runs["bf16"].history
    assert all(math.isfinite(h["loss"]) for h in hi)
    assert [h["loss"] for h in hi] == pytest.approx([h["loss"] for h in lo], abs=2e-2)
    assert runs["bf16"].extra["amp"] == "bf16"


def _sparse_autocast_safe(data, device="cpu", dtype=torch.bfloat16) -> bool:
    adj = LightGCN(data, LightGCNConfig(num_layers=1)).graph("adj").to(device)
    try:
        with torch.autocast(torch.device(device).type, dtype=dtype):
            out = adj.matmul(torch.randn(adj.size[1], 4, device=device))
        return out.dtype == torch.float32
    except (NotImplementedError, RuntimeError):
        return False


def test_bf16_cpu_with_sparse_propagation(tiny):
    """LightGCN under CPU bf16 autocast: the propagation must stay float32."""
    assert _sparse_autocast_safe(tiny), "SparseAdj.matmul must propagate in float32 under autocast"
    torch.manual_seed(0)
    res = Trainer(LightGCN(tiny, LightGCNConfig(num_layers=2)), tiny,
                  _cfg(epochs=2, amp="bf16")).fit()
    assert all(math.isfinite(h["loss"]) for h in res.history)
    assert res.history[1]["loss"] < res.history[0]["loss"]


@requires_cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_trains(tiny, amp):
    assert _sparse_autocast_safe(tiny, "cuda", amp_dtype(amp, "cuda"))
    torch.manual_seed(0)
    res = Trainer(LightGCN(tiny, LightGCNConfig(num_layers=2)), tiny,
                  _cfg(epochs=2, amp=amp, device="cuda")).fit()
    assert all(math.isfinite(h["loss"]) for h in res.history)
    assert res.history[1]["loss"] < res.history[0]["loss"]
