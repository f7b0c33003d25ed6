"""A progress line with rate and ETA for every long job (training, conversion, labels)."""

import sys
import time
from typing import Optional, TextIO

from absl import logging


def format_seconds(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  hours, rem = divmod(seconds, 3600)
  minutes, secs = divmod(rem, 60)
  return f'{hours:d}:{minutes:02d}:{secs:02d}' if hours else f'{minutes:d}:{secs:02d}'


class Progress:
  """Reports `done/total`, items per second and the time left.

  Args:
    total: number of items the job will do (None if unknown).
    unit: what an item is ('steps', 'frames', 'examples').
    start: items already done before this run (resumed jobs), not counted in
      the rate.
    every_seconds: minimum time between two printed lines.
    stream: where the line goes (stderr); every line is also logged.
  """

  def __init__(self, total: Optional[int], unit: str = 'items', start: int = 0,
               every_seconds: float = 5.0, stream: TextIO = sys.stderr,
               name: str = ''):
    self.total = total
    self.unit = unit
    self.name = name
    self.done = start
    self._start_count = start
    self._start_time = time.monotonic()
    self._last_print = -float('inf')
    self._every = every_seconds
    self._stream = stream

  @property
  def rate(self) -> float:
    elapsed = time.monotonic() - self._start_time
    return (self.done - self._start_count) / elapsed if elapsed > 0 else 0.0

  def eta_seconds(self) -> Optional[float]:
    if self.total is None or self.rate <= 0:
      return None
    return (self.total - self.done) / self.rate

  def line(self) -> str:
    prefix = f'{self.name}: ' if self.name else ''
    total = f'/{self.total}' if self.total is not None else ''
    eta = self.eta_seconds()
    eta_text = f', ETA {format_seconds(eta)}' if eta is not None else ''
    return (f'{prefix}{self.done}{total} {self.unit}, '
            f'{self.rate:.2f} {self.unit}/s{eta_text}')

  def update(self, count: int = 1, force: bool = False, extra: str = '') -> None:
    self.done += count
    now = time.monotonic()
    finished = self.total is not None and self.done >= self.total
    if force or finished or now - self._last_print >= self._every:
      self._last_print = now
      text = self.line() + (f' | {extra}' if extra else '')
      print(text, file=self._stream, flush=True)
      logging.info(text)
