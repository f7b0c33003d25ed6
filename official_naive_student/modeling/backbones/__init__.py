"""modeling/backbones package."""
