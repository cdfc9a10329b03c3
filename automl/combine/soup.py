"""Model soups: averaging the weights of fine-tunes that share a starting point (issue 29).

Fine-tunes from the same pretrained weights and the same head initialisation stay in one
loss basin (Wortsman et al., ICML 2022), so their mean is a working model. `soup_group`
says which trials may be averaged; `average_state_dicts` averages them, refusing any
mismatch instead of producing a broken model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from automl.trial.plan import TrialPlan

BN_COUNTER = "num_batches_tracked"


def soup_group(plan: TrialPlan) -> tuple[Any, ...] | None:
    """The key trials must share to be averaged: architecture, pretrained weights, head shape
    (classes), head initialisation (the seed), preprocessing, and for text the pooling and
    max_length. None for a trial trained from scratch (no shared starting point)."""
    if not plan.pretrained:
        return None
    text = (plan.pooling, plan.max_length) if plan.task == "text" else ()
    return (plan.task, plan.backbone, plan.weights, tuple(plan.classes), plan.seed,
            json.dumps(plan.preprocessing, sort_keys=True), *text)


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]],
                        weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """The (weighted) mean of `states`, key by key. Floating tensors are averaged in float64
    and cast back; integer buffers (BatchNorm's `num_batches_tracked`, which frozen layers
    lack) are taken from the first state that has them. Other differences in keys, or any
    in shapes, raise ValueError."""
    if not states:
        raise ValueError("a soup needs at least one model")
    share = [1.0 / len(states)] * len(states) if weights is None else list(weights)
    if len(share) != len(states) or abs(sum(share) - 1.0) > 1e-6:
        raise ValueError("soup weights must be one per model and sum to 1")
    keys = list(dict.fromkeys(k for state in states for k in state))
    for i, state in enumerate(states):
        # A frozen BatchNorm (FrozenBatchNorm2d) has no counter: depths may differ there.
        missing = [k for k in keys if k not in state and not k.endswith(BN_COUNTER)]
        if missing:
            raise ValueError(f"model {i} has other parameters than the others ({missing[:3]})")
    averaged: dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [state[key] for state in states if key in state]
        if any(t.shape != tensors[0].shape for t in tensors):
            raise ValueError(f"{key}: shapes differ {[tuple(t.shape) for t in tensors]}")
        if tensors[0].is_floating_point():
            total = sum(w * t.to(torch.float64) for w, t in zip(share, tensors, strict=True))
            averaged[key] = torch.as_tensor(total).to(tensors[0].dtype)
        else:
            averaged[key] = tensors[0].clone()
    return averaged


def recompute_batchnorm(model: nn.Module, batches: Iterable[Any],
                        forward: Callable[[nn.Module, Any], Any],
                        only: Collection[str] | None = None) -> bool:
    """Re-estimate every BatchNorm's running statistics of an averaged model on `batches`
    (training inputs under the eval transform): the average of the members' statistics is
    not the statistics of the averaged weights. Only the BatchNorm layers run in train
    mode (dropout stays off). False when the model has none."""
    norms = [m for name, m in model.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and (only is None or name in only)]
    if not norms:
        return False
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative mean over all batches
        norm.train()
    with torch.no_grad():
        for inputs in batches:
            forward(model, inputs)
    model.eval()
    return True


def varied_norms(states: Sequence[dict[str, torch.Tensor]]) -> set[str]:
    """The BatchNorm layers whose running statistics differ between `states`: those some
    member trained. Only these need re-estimating; layers every member kept frozen hold the
    pretrained statistics the layers above were fine-tuned on (re-estimating those on the
    new data cost a single model 4.5 points of validation accuracy in bench/RESULTS.md §16)."""
    found = set()
    for key in states[0]:
        if key.endswith(".running_mean"):
            values = [s[key] for s in states if key in s]
            if any(not torch.equal(v, values[0]) for v in values[1:]):
                found.add(key[:-len(".running_mean")])
    return found


def load_soup(locations: Sequence[str], weights: Sequence[float] | None = None
              ) -> tuple[TrialPlan, nn.Module, set[str]]:
    """The (weighted) average of the checkpoints at `locations`, rebuilt as the first
    member's architecture in eval mode, and its `varied_norms`. Members outside the first's
    `soup_group` raise ValueError: averaging them would not give a working model."""
    from safetensors.torch import load_file

    from automl import storage
    from automl.export.saved import rebuild
    from automl.trial.plan import WEIGHTS_FILE

    plans: list[TrialPlan] = []
    states: list[dict[str, torch.Tensor]] = []
    model: nn.Module | None = None
    for location in locations:
        with storage.local_copy(location) as checkpoint:
            plan = TrialPlan.load(checkpoint)
            if plans and soup_group(plan) != soup_group(plans[0]):
                raise ValueError(f"{location}: not averageable with {locations[0]} (other "
                                 "architecture, weights, classes, seed or preprocessing)")
            if soup_group(plan) is None:
                raise ValueError(f"{location}: trained from scratch; only fine-tunes of the "
                                 "same pretrained weights are averaged")
            plans.append(plan)
            states.append(load_file(str(checkpoint / WEIGHTS_FILE)))
            if model is None:
                model = rebuild(plan, checkpoint)
    assert model is not None
    averaged = average_state_dicts(states, weights)
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    missing = [k for k in missing if not k.endswith(BN_COUNTER)]
    if missing or unexpected:
        raise ValueError(f"the soup does not match its architecture: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return plans[0], model.eval(), varied_norms(states)
