"""Shared fixtures: a small synthetic image folder (three learnable classes), and the rule of
the unit tier: a test that starts Ray is an integration test (`make unit` runs none)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _unit_tests_start_no_ray(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                             ) -> None:
    """`make unit` must stay fast and Ray-free: a test without the integration marker that
    starts Ray fails, naming the marker to add."""
    if request.node.get_closest_marker("integration") is not None:
        return
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("this test starts Ray: mark it @pytest.mark.integration "
                             "(make unit runs no Ray)")

    monkeypatch.setattr(ray, "init", refuse)


def write_image_folder(root: Path, per_class: int = 12, size: int = 32, seed: int = 0) -> Path:
    """Classes differ by where the bright region is: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for cls in ("left", "top", "center"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            h = size // 2
            if cls == "left":
                img[:, :h] += 150
            elif cls == "top":
                img[:h, :] += 150
            else:
                img[h // 2: h + h // 2, h // 2: h + h // 2] += 150
            Image.fromarray(img).save(root / cls / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


POSITIVE = ["good", "great", "fun", "superb", "lovely", "moving"]
NEGATIVE = ["bad", "awful", "boring", "dull", "weak", "tedious"]
FILLER = ["the", "film", "was", "a", "plot", "acting", "and", "story", "very", "quite"]


def write_tiny_bert(root: Path, vocab_size_extra: int = 0) -> Path:
    """A 2-layer BERT config + WordPiece tokenizer built locally (no download)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    root.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    assert len(tokenizer) == len(vocab)
    tokenizer.save_pretrained(root)
    config = BertConfig(vocab_size=len(vocab) - vocab_size_extra, hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(root)
    return root


def write_text_csv(path: Path, per_class: int = 24, seed: int = 0, words: int = 6) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for label, vocab in (("pos", POSITIVE), ("neg", NEGATIVE)):
        for _ in range(per_class):
            text = " ".join([*rng.choice(FILLER, words - 2), *rng.choice(vocab, 2)])
            rows.append(f"{text},{label}")
    rng.shuffle(rows)
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture
def text_csv(tmp_path: Path) -> Path:
    return write_text_csv(tmp_path / "reviews.csv")


OLD_RUN = Path(__file__).parent / "fixtures" / "old_run"


@pytest.fixture
def old_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the fixture; the space names where its images now are, as a user edits
    space.yaml after moving data (the other absolute paths inside stay stale on purpose)."""
    made_in = (OLD_RUN / "MADE_BY").read_text().split("start ")[1].strip()
    work = tmp_path / "work"
    shutil.copytree(OLD_RUN, work)
    space = work / "run" / "space.yaml"
    space.write_text(space.read_text().replace(made_in, str(work)))
    monkeypatch.chdir(work)
    yield work / "run"
