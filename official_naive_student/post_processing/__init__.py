"""post_processing package."""
