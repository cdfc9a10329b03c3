"""Model soups: averaging the weights of fine-tunes that share a starting point (issue 29).

Fine-tunes from the same pretrained weights and the same head initialisation stay in one
loss basin (Wortsman et al., ICML 2022), so their mean is a working model. `soup_group`
says which trials may be averaged; `average_state_dicts` averages them, refusing any
mismatch instead of producing a broken model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from automl.trial.plan import TrialPlan


def soup_group(plan: TrialPlan) -> tuple[Any, ...] | None:
    """The key trials must share to be averaged: architecture, pretrained weights, head shape
    (classes), head initialisation (the seed), preprocessing, and for text the pooling and
    max_length. None for a trial trained from scratch (no shared starting point)."""
    if not plan.pretrained:
        return None
    text = (plan.pooling, plan.max_length) if plan.task == "text" else ()
    return (plan.task, plan.backbone, plan.weights, plan.classes, plan.seed,
            tuple(sorted(plan.preprocessing.items())), *text)


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]],
                        weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """The (weighted) mean of `states`, key by key. Floating tensors are averaged in float64
    and cast back; integer buffers (BatchNorm's `num_batches_tracked`) must agree or are
    taken from the first state. Different keys or shapes raise ValueError."""
    if not states:
        raise ValueError("a soup needs at least one model")
    share = [1.0 / len(states)] * len(states) if weights is None else list(weights)
    if len(share) != len(states) or abs(sum(share) - 1.0) > 1e-6:
        raise ValueError("soup weights must be one per model and sum to 1")
    keys = list(states[0])
    for i, state in enumerate(states[1:], 1):
        if list(state) != keys:
            missing = sorted(set(keys) ^ set(state))[:3]
            raise ValueError(f"model {i} has other parameters than model 0 ({missing})")
    averaged: dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [state[key] for state in states]
        if any(t.shape != tensors[0].shape for t in tensors):
            raise ValueError(f"{key}: shapes differ {[tuple(t.shape) for t in tensors]}")
        if tensors[0].is_floating_point():
            total = sum(w * t.to(torch.float64) for w, t in zip(share, tensors, strict=True))
            averaged[key] = torch.as_tensor(total).to(tensors[0].dtype)
        else:
            averaged[key] = tensors[0].clone()
    return averaged
