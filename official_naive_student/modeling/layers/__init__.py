"""modeling/layers package."""
