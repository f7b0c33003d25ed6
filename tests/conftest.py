"""Shared pytest setup: quiet TensorFlow, a clean gin config for every test."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# The input validation's cache of passed files stays out of the user's home.
os.environ['XDG_CACHE_HOME'] = os.path.join(
    os.environ.get('TMPDIR', '/tmp'), f'naive_student_test_cache_{os.getpid()}')

import gin  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(autouse=True)
def clear_gin_config():
  gin.clear_config()
  yield
  gin.clear_config()
