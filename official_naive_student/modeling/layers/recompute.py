"""Gradient checkpointing: recompute a block's activations in the backward pass.

`recompute(fn, layers)` returns a function equal to `fn` whose backward pass
runs `fn` again instead of keeping its intermediate activations: only its
inputs and outputs stay alive between the forward and the backward pass, at
the cost of one more forward pass of `fn` (Chen et al., "Training Deep Nets
with Sublinear Memory Cost", 2016). It is `tf.recompute_grad` (what
`keras.remat` calls on the TensorFlow backend) plus what a Keras training step
needs to get the *same* gradients:

* random layers draw the same masks: Keras drop path and dropout take their
  randomness from `SeedGenerator` state variables, which the forward pass has
  already advanced; the recomputation restores the state the forward pass
  started from, so DropPath drops the same samples;
* batch-norm moving statistics are updated once per step, not twice: the
  recomputation would update them again, so every non-trainable variable of
  `layers` is put back afterwards to its value at the end of the forward pass;
* the recomputation waits for the incoming gradient (a data dependency, as in
  `tf.recompute_grad`), so the TensorFlow executor cannot schedule it early,
  next to the forward pass, and keep its activations alive anyway.

The ordering of those variable reads and writes relies on program order: eager
execution, or the automatic control dependencies of `tf.function`.

Used by the backbones' `recompute` option (`WideResNet`, `Xception`).
"""

from typing import Callable, Sequence

import keras
import tensorflow as tf
# TensorFlow's own `recompute_grad` stops the tape the same way; no public API
# does. Without it the forward pass would be recorded for nothing (and, in
# eager mode, its activations kept).
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

# Values of the `recompute` option of the backbones.
BLOCKS = 'blocks'
STAGES = 'stages'


def parse_mode(value, allowed=(BLOCKS, STAGES)):
  """False/None -> None, True -> 'blocks', or one of `allowed`."""
  if value is None or value is False:
    return None
  if value is True:
    return BLOCKS
  if value not in allowed:
    raise ValueError(f'recompute must be a bool or one of {allowed}, '
                     f'got {value!r}.')
  return value


def is_recording() -> bool:
  """Whether a gradient tape may record now (else recomputing is pointless)."""
  return record.could_possibly_record()


def _state_variables(layers: Sequence[keras.layers.Layer]):
  """The non-trainable variables (BN statistics, RNG seeds) of `layers`."""
  seen, state = set(), []
  for layer in layers:
    for v in layer.non_trainable_variables:
      if id(v) not in seen:
        seen.add(id(v))
        state.append(v)
  return state


def _after(dy: tf.Tensor) -> tf.Tensor:
  """A zero that depends on `dy`: orders the recomputation after the gradient.

  As in `tf.recompute_grad`: control dependencies are not respected by XLA, a
  data dependency is; reading one element of `dy` keeps it cheap, and a NaN
  `dy` still gives 0.
  """
  first = tf.reduce_max(tf.reshape(dy, [-1])[:1])
  first = tf.cast(first, tf.bool)
  return tf.where(tf.equal(first, first), 0.0, float('nan'))


def recompute(fn: Callable, layers: Sequence[keras.layers.Layer]) -> Callable:
  """fn(*tensors) -> nest of tensors, with activations recomputed for gradients.

  Args:
    fn: a function of float tensors only (close over Python arguments such as
      `training`) that runs `layers`; they must be built already.
    layers: every layer `fn` calls; their non-trainable variables are restored
      around the recomputation (see the module docstring).

  Returns:
    A function with `fn`'s inputs and outputs; its gradients, w.r.t. inputs
    and variables, equal `fn`'s up to float rounding.
  """

  def wrapped(*inputs):
    state = _state_variables(layers)
    # The state the forward pass starts from (a few small vectors and seeds).
    before = [tf.identity(v.value) for v in state]

    @tf.custom_gradient
    def forward(*args):
      with record.stop_recording():
        outputs = fn(*args)

      def grad(*dys, variables=None):
        variables = list(variables or [])
        flat_outputs = tf.nest.flatten(outputs)
        dys = [tf.zeros_like(y) if dy is None else dy
               for y, dy in zip(flat_outputs, dys)]
        after = [tf.identity(v.value) for v in state]
        for v, value in zip(state, before):
          v.assign(value)
        watched = [v for v in variables if v.dtype.is_floating]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
          xs = [tf.identity(x) for x in args]
          if not tf.executing_eagerly():
            dependency = _after(dys[0])
            xs = [x + tf.cast(dependency, x.dtype) for x in xs]
          tape.watch(xs)
          tape.watch(watched)
          recomputed = tf.nest.flatten(fn(*xs))
        grads = tape.gradient(recomputed, xs + watched, output_gradients=dys)
        for v, value in zip(state, after):
          v.assign(value)
        by_variable = {v.ref(): g for v, g in zip(watched, grads[len(xs):])}
        return (grads[:len(xs)],
                [by_variable.get(v.ref()) for v in variables])

      return outputs, grad

    return forward(*inputs)

  return wrapped
