"""The one RGB <-> panoptic id codec of PNGs (id = R + 256 G + 65536 B)."""

import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import panoptic_rgb


def test_round_trip_and_the_channel_order():
  ids = np.array([[0, 1, 256], [65536, 26001, (1 << 24) - 1]])
  rgb = panoptic_rgb.ids_to_rgb(ids)
  assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
  np.testing.assert_array_equal(rgb[0, 2], [0, 1, 0])
  np.testing.assert_array_equal(rgb[1, 0], [0, 0, 1])
  np.testing.assert_array_equal(panoptic_rgb.rgb_to_ids(rgb), ids)
  as_tensor = panoptic_rgb.rgb_to_ids(tf.cast(tf.constant(rgb), tf.int32))
  np.testing.assert_array_equal(as_tensor.numpy(), ids)


@pytest.mark.parametrize('bad', [-1, 1 << 24])
def test_ids_that_three_bytes_cannot_hold_are_refused(bad):
  with pytest.raises(ValueError, match='outside'):
    panoptic_rgb.ids_to_rgb(np.array([bad]))
