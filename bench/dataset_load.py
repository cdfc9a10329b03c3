"""Loading a prepared variant's splits into the object store: a read task per Parquet file
(before) vs `automl.data.shards.dataset_of` (a task per cluster CPU), each in a fresh
embedded Ray, side by side.

    python bench/dataset_load.py runs/prepared-data/<catalog>/<variant>
"""

from __future__ import annotations

import json
import subprocess
import sys

DRIVER = """
import json, sys, time
import ray, ray.data
from automl import storage
from automl.data.shards import dataset_of, read_table
from automl.search import ray_session

ray_session.init_ray(None)
read = ray.remote(num_cpus=0)(read_table)

def per_file(folder):
    refs = [read.remote(f, None) for f in storage.list_files(folder, ".parquet")]
    return ray.data.from_arrow_refs(refs)

load = per_file if sys.argv[2] == "per_file" else lambda folder: dataset_of(folder, None)
seconds = {}
for split in ("train", "val"):
    started = time.time()
    rows = load(f"{sys.argv[1]}/{split}").count()
    seconds[split] = (time.time() - started, rows)
print(json.dumps(seconds))
"""


def main() -> None:
    """Both ways, each in a fresh driver; print the seconds per split and the ratio."""
    variant = sys.argv[1]
    found = {}
    for way in ("per_file", "per_cpu"):
        done = subprocess.run([sys.executable, "-c", DRIVER, variant, way],
                              capture_output=True, text=True, check=True)
        found[way] = json.loads(done.stdout.strip().splitlines()[-1])
    for way, splits in found.items():
        print(way, ", ".join(f"{s} {sec:.2f} s ({rows} rows)" for s, (sec, rows) in splits.items()))
    total = {w: sum(sec for sec, _ in s.values()) for w, s in found.items()}
    print(f"both splits: per file {total['per_file']:.1f} s, per CPU {total['per_cpu']:.1f} s "
          f"({total['per_file'] / total['per_cpu']:.1f}× faster)")


if __name__ == "__main__":
    main()
