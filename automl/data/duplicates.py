"""Exact duplicates across splits: the same image bytes or the same text in training and in
validation or test make those scores measure memory, not generalization.

Every example gets a content key (a hash of the file's bytes, or of the stripped text); a
validation or test example whose key also occurs in an earlier split (train < val < test) is
a leak. By default (`data.drop_duplicates`) it leaves its split; either way the counts and a
few examples are reported. Images are hashed only where two files have the same size (exact
duplicates always do), so a folder of distinct photos costs a listing, not a read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from automl import storage
from automl.data.catalog import SPLIT_NAMES, UNUSED

EXAMPLES = 5
HASH_THREADS = 16


@dataclass(frozen=True)
class Duplicates:
    """What the duplicate check found (plain values: saved in the run's `static.json`)."""

    across: dict[str, int] = field(default_factory=dict)
    """`train→val`: validation examples that duplicate a training example (and so on)."""
    within: int = 0
    """Examples that repeat another one of the same split (reported, kept)."""
    removed: int = 0
    """Validation/test examples taken out of their split (`data.drop_duplicates`)."""
    examples: list[list[str]] = field(default_factory=list)
    """A few [earlier split's copy, later copy] pairs, by location (texts: table:row)."""

    @property
    def leaked(self) -> int:
        """Validation and test examples that duplicate an earlier split's."""
        return sum(self.across.values())

    def describe(self) -> str | None:
        """One line for the start of a search (None when nothing repeats)."""
        if not self.leaked and not self.within:
            return None
        parts = [f"{n} {pair.split('→')[1]} example(s) duplicate {pair.split('→')[0]} ones"
                 for pair, n in self.across.items() if n]
        if self.within:
            parts.append(f"{self.within} repeat(s) within a split (kept)")
        line = "exact duplicates: " + "; ".join(parts)
        if self.removed:
            line += f"; removed {self.removed} from validation/test (data.drop_duplicates)"
        elif self.leaked:
            line += ("; kept (data.drop_duplicates: false): their validation/test scores "
                     "partly measure memory")
        if self.examples:
            first = self.examples[0]
            line += f"; e.g. {first[1]} = {first[0]}"
        return line


def text_keys(texts: pd.Series) -> np.ndarray:
    """Content keys of stripped texts (missing texts get none)."""
    return np.array([None if t is None or t is pd.NA else _digest(str(t).encode())
                     for t in texts], dtype=object)


def file_keys(locations: Sequence[str], sizes: Sequence[int]) -> np.ndarray:
    """Content keys of files: a hash of the bytes of every file that shares its size with
    another (the only ones that can be equal); a key of its own for every other file."""
    sizes_arr = np.asarray(sizes)
    values, counts = np.unique(sizes_arr, return_counts=True)
    shared = np.isin(sizes_arr, values[counts > 1]) & (sizes_arr >= 0)
    keys = np.array([f"unique:{i}" for i in range(len(locations))], dtype=object)
    candidates = np.flatnonzero(shared)
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        digests = pool.map(lambda i: _digest(storage.read_bytes(locations[i])), candidates)
        for i, digest in zip(candidates, digests, strict=True):
            keys[i] = digest
    return keys


def resolve(split: np.ndarray, keys: np.ndarray, names: Sequence[str], drop: bool
            ) -> tuple[np.ndarray, Duplicates]:
    """Find the validation/test rows whose key occurs in an earlier split (and repeats within
    a split); with `drop`, mark those rows UNUSED. Returns the new split column and what was
    found. `names` say where each row is, for the examples."""
    used = np.flatnonzero((split != UNUSED) & pd.notna(keys))
    frame = pd.DataFrame({"key": keys[used], "split": split[used], "row": used})
    first = frame.groupby("key")["split"].transform("min")
    later = frame[frame["split"] > first]
    across = {f"{SPLIT_NAMES[int(a)]}→{SPLIT_NAMES[int(b)]}": int(n)
              for (a, b), n in later.groupby([first[later.index], later["split"]]).size().items()}
    within = int(frame.duplicated(["key", "split"]).sum())
    first_row = frame[frame["split"] == first].drop_duplicates("key").set_index("key")["row"]
    examples = [[str(names[int(first_row[k])]), str(names[int(r)])]
                for k, r in zip(later["key"][:EXAMPLES], later["row"][:EXAMPLES], strict=True)]
    out = split.copy()
    if drop and len(later):
        out[later["row"].to_numpy()] = UNUSED
    return out, Duplicates(across, within, len(later) if drop else 0, examples)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()

