"""An ensemble as one model: the weighted mean of its members' probabilities (issue 29).

`WeightedEnsemble.forward` returns log(Σ wᵢ softmax(memberᵢ(x))): a logit vector whose
softmax is exactly the ensemble's probabilities, so every consumer of an exported model —
`automl predict`, `automl.load`, the README's onnxruntime snippet, the parity checks —
works on an ensemble unchanged. Members here share one input (one preprocessing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class WeightedEnsemble(nn.Module):
    """Members' probabilities averaged with fixed `weights` (one per member, sum 1)."""

    weights: torch.Tensor

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if not members or len(members) != len(weights):
            raise ValueError("an ensemble needs one weight per member, and a member")
        if any(w <= 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"ensemble weights must be positive and sum to 1: {list(weights)}")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """log of the weighted mean probability (a logit vector for softmax)."""
        log_probs = torch.stack([torch.log_softmax(m(inputs).float(), dim=-1)
                                 for m in self.members])
        log_weights = torch.log(self.weights).view(-1, *([1] * (log_probs.dim() - 1)))
        return torch.logsumexp(log_probs + log_weights, dim=0)
