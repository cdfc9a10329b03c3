"""Driver memory of the end-of-search export: in the driver (before) vs in a Ray task (now).

    python bench/export_memory.py runs/demo_vision [--formats safetensors,torchscript,onnx]

Exports the run's selected trial twice, each in a fresh driver process that starts the
embedded Ray first (as a search's driver has), and prints each driver's resident memory
before the export and its peak during it (`ru_maxrss`), side by side, plus the ratio of the
growth. The exports go to a temporary folder; the run is only read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = """
import json, resource, sys, time
from automl.export.from_run import export_trial
from automl.runs.selection import best_trial
from automl.runs.read import load_run, read_context
from automl.search import ray_session

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

ray_session.init_ray(None)
run, board, _ = load_run(sys.argv[1], None)
row = best_trial(board)
before, started = rss_mb(), time.time()
export_trial(run, row, board, read_context(run), sys.argv[2], sys.argv[3].split(","),
             log=lambda _: None, on_ray=sys.argv[4] == "ray")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"before_mb": before, "peak_mb": peak, "seconds": time.time() - started,
                  "trial": str(row["trial_id"]), "backbone": str(row["backbone"])}))
"""


def measure(run: str, formats: str, where: str, out: Path) -> dict[str, float]:
    """One fresh driver process exporting `run`'s selected trial `where` (driver | ray)."""
    done = subprocess.run([sys.executable, "-c", DRIVER, run, str(out), formats, where],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Measure both ways and print the table row."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--formats", default="safetensors,torchscript,onnx")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = {where: measure(args.run, args.formats, where, Path(tmp) / where)
                 for where in ("driver", "ray")}
    first = found["driver"]
    print(f"trial {first['trial']} ({first['backbone']}), formats {args.formats}")
    print("| export runs in | driver before | driver peak | growth | export s |")
    print("|---|---|---|---|---|")
    for where, m in found.items():
        print(f"| {where} | {m['before_mb']:.0f} MB | {m['peak_mb']:.0f} MB | "
              f"{m['peak_mb'] - m['before_mb']:.0f} MB | {m['seconds']:.1f} |")
    grow = {w: max(m["peak_mb"] - m["before_mb"], 1.0) for w, m in found.items()}
    print(f"driver growth, Ray task ÷ in the driver: {grow['ray'] / grow['driver']:.2f}×")


if __name__ == "__main__":
    main()
