"""Shared pytest setup: quiet TensorFlow, a clean gin config for every test."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import gin  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(autouse=True)
def clear_gin_config():
  gin.clear_config()
  yield
  gin.clear_config()
