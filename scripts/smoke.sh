#!/usr/bin/env bash
# The README's first run, shortened (2 trials, 1 epoch), run the way the README runs it: from
# the repo root, with a relative --run-dir. Fails unless a trial finished and the export exists.
set -euo pipefail
cd "$(dirname "$0")/.."
run=runs/ci-smoke
rm -rf "$run"
.venv/bin/automl search search_spaces/demo_vision.yaml --run-dir "$run" --num-samples 2 --epochs 1
.venv/bin/python - "$run" <<'PY'
import sys
from pathlib import Path

import pandas as pd

run = Path(sys.argv[1])
board = pd.read_csv(run / "leaderboard.csv")
finished = board[board["status"] == "finished"]
assert len(finished) >= 1, f"smoke: no trial finished:\n{board[['trial_id', 'status', 'error']]}"
assert (run / "export" / "model.safetensors").is_file(), "smoke: no exported model"
print(f"smoke: ok, {len(finished)} of {len(board)} trials finished, best val_accuracy "
      f"{board['val_accuracy'].max():.3f}, export in {run / 'export'}")
PY
