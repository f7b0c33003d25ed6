"""Naive-Student: semi-supervised Panoptic-DeepLab from unlabeled street video."""
