"""Decoding a thin strip: the naive eval transform (resize the whole image, then crop) against
automl's (`resize_crop`: cut the frame to at most 3:1 around its center, resize, crop — the
frame prepared data stores), side by side, each in its own process for its peak memory. A
1 × 20000 PNG of a few hundred bytes becomes a 256 × 5.1M-pixel image the naive way.

    .venv/bin/python bench/thin_image.py [--width 20000] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from PIL import Image
from automl.tasks.image_files import resize_crop, to_rgb
path, size, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
img = to_rgb(Image.open(path))
started = time.perf_counter()
if method == "whole":  # naive: resize everything, then center-crop
    scale = int(size / 0.875)
    w, h = img.size
    if w < h:
        new = (scale, max(scale, round(h * scale / w)))
    else:
        new = (max(scale, round(w * scale / h)), scale)
    big = img.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    big.crop((left, top, left + size, top + size))
else:
    resize_crop(img, size, "bicubic", 0.875)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    """Print each method's time and peak memory, and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=20000)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "strip.png"
        Image.new("RGB", (args.width, 1), (200, 10, 10)).save(path)
        results = {}
        for method in ("whole", "cut_first"):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(args.size),
                                  method], capture_output=True, text=True, check=True).stdout
            results[method] = json.loads(out)
            print(f"{method:9s} {results[method]['seconds']:8.3f} s  "
                  f"peak {results[method]['peak_mb']:7.0f} MB  ({path.stat().st_size} B PNG)")
    whole, box = results["whole"], results["cut_first"]
    print(f"cut first vs whole: {whole['seconds'] / box['seconds']:.0f}x faster, "
          f"{whole['peak_mb'] / box['peak_mb']:.0f}x less peak memory")


if __name__ == "__main__":
    main()
