"""The test split, read once selection among the single trial, soups and the ensemble is
over, for those candidates alone (issue 29): nothing here feeds back into a choice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from automl import storage
from automl.combine import predictions as stored
from automl.combine.result import Candidate, Combination
from automl.combine.selection import confusion_of, score_probabilities, softmax
from automl.combine.sources import folders, remote
from automl.trial.classification import metric_se

BOOTSTRAP = 200
"""Resamples of the test rows behind a paired gain's standard error."""


def score_on_test(result: Combination, checkpoints: dict[str, str], data_root: str,
                  use_gpu: bool, log: Callable[[str], Any]) -> Combination:
    """`result` with each candidate's test score and its paired gain over the trial the
    search selected (the first candidate; bootstrap SE over the test rows). `checkpoints`:
    trial id → checkpoint. Unchanged when the run has no test split. One Ray task per model
    predicts it."""
    import ray

    models = {c.checkpoint for c in result.candidates if c.kind != "ensemble" and c.checkpoint}
    for c in result.candidates:
        if c.kind == "ensemble":
            models.update(checkpoints[t] for t in c.members)
    tests = {m: folders(m, data_root, "test")[0] for m in models}
    if not tests or not all(storage.exists(f) and storage.list_files(f, ".parquet")
                            for f in tests.values()):
        return result
    task = remote(stored.predict_split, use_gpu)
    refs = {m: task.remote(m, folder) for m, folder in tests.items()}
    keys, labels, logits = stored.align({m: ray.get(ref) for m, ref in refs.items()})
    metric = result.metric

    def probabilities(c: Candidate) -> np.ndarray:
        if c.kind == "ensemble":
            return np.asarray(sum(w * softmax(logits[checkpoints[t]])
                                  for t, w in c.members.items()))
        assert c.checkpoint is not None
        return softmax(logits[c.checkpoint])

    base = probabilities(result.candidates[0])
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(labels), len(labels)) for _ in range(BOOTSTRAP)]
    out = []
    for c in result.candidates:
        p = probabilities(c)
        test = {"value": score_probabilities(p, labels, metric)[0],
                "se": metric_se(confusion_of(p, labels), metric), "examples": float(len(labels))}
        if c is not result.candidates[0]:
            test["gain"] = test["value"] - score_probabilities(base, labels, metric)[0]
            test["gain_se"] = float(np.std([
                score_probabilities(p[d], labels[d], metric)[0]
                - score_probabilities(base[d], labels[d], metric)[0] for d in draws]))
        out.append(replace(c, test=test))
    log(f"test split: {len(keys)} examples scored for {len(out)} candidate(s)")
    return replace(result, candidates=out)
