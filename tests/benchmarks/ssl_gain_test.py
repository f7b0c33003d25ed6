"""benchmarks/ssl_gain.py: its flag checks and its table of paired gains.

The script defines absl flags at import, so it runs in a child process here
and never shares this process's flag registry.
"""

import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _python(args, **kwargs):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, **kwargs)


def test_teacher_stage_without_teachers_from_is_refused_before_any_run(
    tmp_path):
  out = tmp_path / 'out'
  result = _python(['benchmarks/ssl_gain.py', '--teacher_stage', 'control',
                    '--seeds', '0', '--out', str(out)])
  assert result.returncode != 0
  assert '--teacher_stage needs --teachers_from' in result.stderr
  assert not out.exists()  # Nothing was trained or written.


def test_a_missing_teacher_to_reuse_is_named(tmp_path):
  source = tmp_path / 'earlier'
  (source / 'seed0').mkdir(parents=True)
  result = _python(['benchmarks/ssl_gain.py', '--seeds', '0',
                    '--out', str(tmp_path / 'out'),
                    '--teachers_from', str(source)])
  assert result.returncode != 0
  assert f'--teachers_from: no Teacher in {source / "seed0"}' in result.stderr


def test_the_table_gives_the_spread_of_paired_gains_not_of_the_rows():
  # The Teachers' PQ spreads by 10 across seeds, the Student always leads
  # it by exactly 1: the paired gain is 1 +- 0, the rows' spread is ~7.07.
  per_seed = {
      s: {'teacher': {'PQ': 10.0 * s, 'mIoU': 20.0},
          'control': {'PQ': 10.0 * s + 0.5, 'mIoU': 21.0 + s},
          'student': {'PQ': 10.0 * s + 1.0, 'mIoU': 22.0}}
      for s in (0, 1)}
  script = textwrap.dedent(f"""
      import json
      from benchmarks import ssl_gain
      per_seed = {{int(k): v for k, v in json.loads({json.dumps(json.dumps(per_seed))}).items()}}
      print(ssl_gain.format_table(per_seed))
  """)
  result = _python(['-c', script])
  assert result.returncode == 0, result.stderr
  lines = {line[:30].strip(): line[30:].split()
           for line in result.stdout.splitlines()[2:]}
  assert lines['teacher'] == ['5.00', '+-', '7.07', '20.00', '+-', '0.00']
  assert lines['student - teacher'] == ['1.00', '+-', '0.00',
                                        '2.00', '+-', '0.00']
  assert lines['student - control'] == ['0.50', '+-', '0.00',
                                        '0.50', '+-', '0.71']
  assert 'control - teacher' not in lines  # The control is not a method row.
  assert result.stdout.splitlines()[0] == '2 seeds: [0, 1]'


def test_a_reused_world_is_linked_into_the_new_run(tmp_path):
  # A run from hop2's chains must find the world there; a reused run
  # without one is refused, not generated again.
  source = tmp_path / 'hop1'
  (source / 'world1').mkdir(parents=True)
  (source / 'seed0').mkdir()  # No Teacher: the run stops after the world.
  hop2 = tmp_path / 'hop2'
  result = _python(['benchmarks/ssl_gain.py', '--seeds', '0', '--world_seed',
                    '1', '--out', str(hop2), '--teachers_from', str(source)])
  assert 'no Teacher in' in result.stderr
  assert os.path.realpath(hop2 / 'world1') == os.path.realpath(
      source / 'world1')
  result = _python(['benchmarks/ssl_gain.py', '--seeds', '0', '--world_seed',
                    '1', '--out', str(tmp_path / 'hop3'),
                    '--teachers_from', str(tmp_path / 'missing')])
  assert 'the world its Teachers learnt from' in result.stderr


def test_a_student_variant_reuses_the_labels_a_label_variant_does_not():
  script = textwrap.dedent("""
      from benchmarks import ssl_gain
      for variant, stages in ssl_gain.variant_plan(
          True, ['confident=a = 1'], ['strong=b = 2']):
        print(variant.split('=')[0], sorted(stages))
  """)
  result = _python(['-c', script])
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [
      "oracle [(0, 'teacher')]",
      "confident [(0, 'teacher')]",
      "strong [(0, 'teacher'), (1, 'pseudo_label')]"]


def test_a_variant_is_also_set_against_its_own_control():
  rows = ('teacher', 'control', 'student', 'strong', 'control strong',
          'student ft5e4', 'control ft5e4')
  per_seed = {s: {name: {'PQ': float(i + s), 'mIoU': float(i)}
                  for i, name in enumerate(rows)} for s in (0, 1)}
  script = textwrap.dedent(f"""
      import json
      from benchmarks import ssl_gain
      per_seed = {{int(k): v for k, v in json.loads({json.dumps(json.dumps(per_seed))}).items()}}
      print(ssl_gain.format_table(per_seed))
  """)
  result = _python(['-c', script])
  assert result.returncode == 0, result.stderr
  gains = [line[:30].strip() for line in result.stdout.splitlines()
           if ' - ' in line[:30]]
  assert gains == [
      'student - teacher', 'student - control',
      'strong - teacher', 'strong - control', 'strong - control strong',
      'student ft5e4 - teacher', 'student ft5e4 - control',
      'student ft5e4 - control ft5e4']
