"""The ensemble's graph: PyTorch, TorchScript and ONNX equal the mean of its members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from automl.export.ensemble import WeightedEnsemble


def member(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4)).eval()


def test_ensemble_is_the_weighted_mean_of_its_members_in_every_runtime(tmp_path: Path) -> None:
    import onnxruntime as ort

    members, weights = [member(0), member(1), member(2)], [0.5, 0.25, 0.25]
    ensemble = WeightedEnsemble(members, weights).eval()
    x = torch.randn(5, 3, 2, 2)
    with torch.no_grad():
        expected = sum(w * torch.softmax(m(x), -1) for w, m in zip(weights, members, strict=True))
        out = ensemble(x)
    assert torch.allclose(torch.softmax(out, -1), torch.as_tensor(expected), atol=1e-6)
    scripted = torch.jit.trace(ensemble, x)
    assert torch.allclose(scripted(x), out, atol=1e-6)
    path = tmp_path / "ensemble.onnx"
    torch.onnx.export(ensemble, (x,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"input": x.numpy()})[0]
    assert np.allclose(onnx_out, out.numpy(), atol=1e-5)


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        WeightedEnsemble([member(0), member(1)], [0.5, 0.6])
    with pytest.raises(ValueError, match="one weight per member"):
        WeightedEnsemble([member(0)], [0.5, 0.5])
