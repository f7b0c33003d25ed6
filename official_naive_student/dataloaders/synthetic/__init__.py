"""Synthetic Cityscapes-format street video (scene sampling, rendering, files)."""
