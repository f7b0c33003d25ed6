"""modeling/heads package."""
