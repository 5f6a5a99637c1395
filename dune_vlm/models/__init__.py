"""Network definitions: the Mix Transformer encoder, the Embed-only baseline, the fusion model."""
