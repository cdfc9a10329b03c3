"""Backbones: where weights come from (`registry`), timm and Hugging Face models with a
fresh head (`timm_backbone`, `hf_backbone`), their layer groups for unfreezing and per-group
learning rates (`groups`), and the Hugging Face export format (`hf_export`, `hf_modeling`).
Each task (`automl.tasks`) builds its own models from these."""
