"""A transformers encoder with mean or CLS pooling and a linear head, in Hugging Face format.

automl copies this file into the Hugging Face folder of every exported text model, so that
`AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)` loads the
model with torch and transformers alone (automl is not needed). It imports nothing else and
the weights it loads are `model.safetensors`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class AutomlTextConfig(PretrainedConfig):
    """The encoder's own config (as a dict), the pooling and the classes."""

    model_type = "automl_text_classifier"

    def __init__(self, encoder: dict[str, Any] | None = None, pooling: str = "mean",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = dict(encoder or {})
        self.pooling = pooling


class AutomlTextForSequenceClassification(PreTrainedModel):
    """Encoder → CLS or attention-masked mean pooling → dropout → linear head."""

    config_class = AutomlTextConfig
    base_model_prefix = "encoder"

    def __init__(self, config: AutomlTextConfig) -> None:
        super().__init__(config)
        settings = dict(config.encoder)
        encoder_config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        self.encoder = AutoModel.from_config(encoder_config)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # the pooling below replaces it
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(int(encoder_config.hidden_size), int(config.num_labels or 2))
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutput:
        """Logits (and the cross-entropy loss when `labels` are given)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids,
                              attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.head(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
