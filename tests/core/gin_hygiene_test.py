"""Gin hygiene: only what a shipped gin file reaches is registered with gin.

A registered class that Python code builds directly would accept a binding,
leave it out of the operative config and ignore it; unregistered, the same
binding fails at parse time with the name in the error.
"""

import glob
import importlib
import os
import pkgutil
import re

import gin
import pytest

import official_naive_student

GIN_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'gin')
# Registered for gin files of users (documented in a shipped file's comments).
DOCUMENTED_ONLY = {'mix_pseudo_labels'}


def _shipped_gin_text() -> str:
  files = glob.glob(os.path.join(GIN_DIR, '**', '*.gin'), recursive=True)
  assert files
  return '\n'.join(line for path in files for line in open(path)
                   if not line.lstrip().startswith('#'))


def _package_configurables():
  for module in pkgutil.walk_packages(official_naive_student.__path__,
                                      'official_naive_student.'):
    importlib.import_module(module.name)
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  return sorted({c.name for _, c in registry.items() if c.module != 'gin'})


def test_every_registered_configurable_is_reached_by_a_shipped_gin_file():
  text = _shipped_gin_text()
  unreached = [
      name for name in _package_configurables()
      if name not in DOCUMENTED_ONLY and not re.search(
          rf'(^|[@/\s]){name}\b', text, re.M)]
  assert not unreached, (f'registered with gin but bound by no shipped gin '
                         f'file (unregister them): {unreached}')


@pytest.mark.parametrize('binding', [
    'WideResNet.drop_path_keep_prob = 0.5',
    'ASPP.pool_size = (4, 4)',
    'PolyLearningRate.power = 2.0',
])
def test_a_binding_of_a_directly_built_class_fails_loudly(binding):
  _package_configurables()
  with pytest.raises(ValueError, match=binding.split('.')[0]):
    gin.parse_config(binding)
