"""The image demo on deliberately imbalanced data, selected by accuracy vs by balanced
accuracy, both scored on the same balanced test images (the demo's 1000 official t10k images).

Three classes that Fashion-MNIST models confuse most (shirt, pullover, coat) are cut to 10 %
of their training images (20 of 200) through a manifest; everything else is the demo space.
Each search prints as usual (a variant whose run dir already has a summary is read back); the
table at the end compares the selections, with the standard errors of each test figure, and
the temperature scaling's ECE before/after. The third variant also weights the loss
(`train.class_weights: balanced`).

    python bench/imbalanced_selection.py [--out runs/bench-imbalanced]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from automl.api import run_search
from automl.config import parse
from automl.trial.classification import metric_se, metric_value

CUT = ("shirt", "pullover", "coat")
KEEP = 0.1
VARIANTS = {
    "accuracy": {"search.metric": "accuracy"},
    "balanced_accuracy": {"search.metric": "balanced_accuracy"},
    "balanced_accuracy+class_weights": {"search.metric": "balanced_accuracy",
                                        "train.class_weights": "balanced"},
}


def imbalanced_manifest(folder: Path, out: Path) -> Path:
    """A manifest of the demo images with the `CUT` classes kept at `KEEP` of their files."""
    rows = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.png"))
        if class_dir.name in CUT:
            files = files[:round(len(files) * KEEP)]
        rows += [{"path": str(f.resolve()), "label": class_dir.name} for f in files]
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "imbalanced.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-imbalanced")
    parser.add_argument("--space", default="search_spaces/demo_vision.yaml")
    args = parser.parse_args()
    out = Path(args.out)
    manifest = imbalanced_manifest(Path("data/fashion_mnist"), out)
    rows = []
    for name, overrides in VARIANTS.items():
        run = out / name
        if not (run / "summary.json").is_file():  # a variant measured before is read back
            cfg = parse.load(args.space, {"data.path": str(manifest), **overrides})
            run_search(cfg, run_dir=run)
        summary = json.loads((run / "summary.json").read_text())
        confusion = np.array(summary["test"]["confusion"])
        best = pd.read_csv(run / "leaderboard.csv").iloc[0]
        calibration = summary.get("calibration") or {}
        rows.append({
            "variant": name, "trial": best["trial_id"], "backbone": best["backbone"],
            "head_lr": f"{best['head_lr']:.3g}",
            "val_accuracy": best["val_accuracy"],
            "val_balanced": best["val_balanced_accuracy"],
            **{f"test_{m}": f"{metric_value(confusion, m):.4f} ± {metric_se(confusion, m):.4f}"
               for m in ("accuracy", "balanced_accuracy")},
            "recall_cut_classes": _recall(confusion, CUT),
            "test_ece": f"{calibration.get('test_ece', float('nan')):.3f} → "
                        f"{calibration.get('test_ece_calibrated', float('nan')):.3f}",
            "wall_s": round(summary["wall_time_s"])})
    print(pd.DataFrame(rows).to_string(index=False))


def _recall(confusion: np.ndarray, names: tuple[str, ...]) -> str:
    """Mean test recall of the cut classes (the matrix's rows are the sorted class names)."""
    classes = sorted(p.name for p in Path("data/fashion_mnist").iterdir() if p.is_dir())
    idx = [classes.index(n) for n in names]
    recall = np.diag(confusion)[idx] / confusion.sum(1)[idx]
    return f"{recall.mean():.3f}"


if __name__ == "__main__":
    main()
