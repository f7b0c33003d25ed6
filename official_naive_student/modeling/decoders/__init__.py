"""modeling/decoders package."""
