#!/usr/bin/env bash
# The README's first run, shortened (2 trials, 1 epoch), run the way the README runs it: from
# the repo root, with a relative --run-dir. Fails unless a trial finished and the export exists.
set -euo pipefail
cd "$(dirname "$0")/.."
run=runs/ci-smoke
rm -rf "$run"
.venv/bin/automl search search_spaces/demo_vision.yaml --run-dir "$run" --num-samples 2 --epochs 1
.venv/bin/python - "$run" <<'PY'
import json
import sys
from pathlib import Path

import pandas as pd

run = Path(sys.argv[1])
board = pd.read_csv(run / "leaderboard.csv")
finished = board[board["status"] == "finished"]
assert len(finished) >= 1, f"smoke: no trial finished:\n{board[['trial_id', 'status', 'error']]}"
assert (run / "export" / "model.safetensors").is_file(), "smoke: no exported model"
# The selected trial scored on the demo's test images (data.test_path), which nothing in the
# search read.
test = json.loads((run / "summary.json").read_text())["test"]
assert test and test["examples"] == 1000 and 0 < test["accuracy"] <= 1, test
# The real demo model in every format, each checked against PyTorch by the export itself; and
# the ONNX runtime predicts what PyTorch predicts on real images.
import automl
import numpy as np

checks = json.loads((run / "export" / "manifest.json").read_text())["checks"]
assert [c["name"] for c in checks] == ["safetensors", "torchscript", "onnx"], checks
assert all(c["top1_agreement"] == 1.0 and c["max_abs_diff"] < 1e-2 for c in checks), checks
images = sorted(str(p) for p in Path("data/fashion_mnist").rglob("*.png"))[::100]
on_torch = automl.load(run / "export").predict_proba(images)
on_onnx = automl.load(run / "export", runtime="onnx").predict_proba(images)
assert (on_torch.idxmax(axis=1) == on_onnx.idxmax(axis=1)).all()
gap = float(np.abs(on_torch.to_numpy() - on_onnx.to_numpy()).max())
print(f"smoke: ok, {len(finished)} of {len(board)} trials finished, best val_accuracy "
      f"{board['val_accuracy'].max():.3f}, test accuracy {test['accuracy']:.3f} ± "
      f"{test['se']:.3f} on {test['examples']} images, export in {run / 'export'} (torchscript, onnx "
      f"checked; onnxruntime = PyTorch on {len(images)} images, max |Δ prob| {gap:.1g})")
PY
