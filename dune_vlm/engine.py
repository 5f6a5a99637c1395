"""Compatibility names for ``bench/`` (which imports ``dune_vlm.engine.collate``).

The code lives in ``dune_vlm.checkpoint`` (checkpoints, text embeddings, weights loading) and
``dune_vlm.evaluation`` (batches, metrics); import from there.
"""

from dune_vlm.checkpoint import load_model_for_inference, load_text_embeds
from dune_vlm.evaluation import collate, evaluate, pick_device

__all__ = ["collate", "evaluate", "load_model_for_inference", "load_text_embeds", "pick_device"]
