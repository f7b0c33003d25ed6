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


def test_a_variant_is_also_set_against_the_papers_student_and_its_own_control():
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
      'strong - teacher', 'strong - control', 'strong - student',
      'strong - control strong',
      'student ft5e4 - teacher', 'student ft5e4 - control',
      'student ft5e4 - student', 'student ft5e4 - control ft5e4']
  # Rows are numbered in order: strong (3) - student (2) is 1 on both seeds.
  strong_vs_paper, = [line for line in result.stdout.splitlines()
                      if line.startswith('strong - student ')]
  assert strong_vs_paper.split()[3:] == ['1.00', '+-', '0.00', '1.00', '+-', '0.00']


def test_a_binding_no_stage_used_is_refused_naming_it(tmp_path):
  # What gin writes for the control of a control variant: the pipeline the
  # binding reached, and the labeled one unscoped (a `control/labeled/...`
  # binding never reaches it).
  control = tmp_path / 'iter1_control'
  control.mkdir()
  (control / 'operative_config.gin').write_text(
      '# Macros:\n'
      'STUDENT_STEPS = 3600\n'
      '# Parameters for strong/InputPipeline:\n'
      'strong/InputPipeline.crop_size = \\\n'
      '    (128, 256)\n'
      'strong/InputPipeline.strong_augment = True\n'
      "labeled/InputPipeline.mode = 'train'\n"
      'student/mix_pseudo_labels.shares = [0.5, 0.5]\n'
      'student/pseudo/InputPipeline.cache_decoded = True\n')
  script = textwrap.dedent(f"""
      from benchmarks import ssl_gain
      # An unscoped binding reaches a call in a scope (gin lists it scoped)
      # unless a scoped binding overrides it there (another value listed);
      # a scoped one reaches the scopes it is a prefix of, as gin applies it.
      used = ['student/InputPipeline.cache_decoded = True',
              'strong/InputPipeline.strong_augment = True',
              'strong/InputPipeline.crop_size=(128, 256)', 'STUDENT_STEPS = 3600',
              'mix_pseudo_labels.shares = [0.5,0.5]',
              'InputPipeline.crop_size = (128, 256)']
      ignored = ['control/labeled/InputPipeline.strong_augment = True',
                 'InputPipeline.strong_augment = False',
                 'mix_pseudo_labels.shares = [0.9, 0.1]',
                 'pseudo/InputPipeline.cache_decoded = True']
      text = open({str(control / 'operative_config.gin')!r}).read()
      assert ssl_gain.unreached_bindings(used, [text]) == [], 'used'
      assert ssl_gain.unreached_bindings(used + ignored, [text]) == ignored
      # A continuation line of a value is not a name.
      assert ssl_gain.unreached_bindings(['(128, 256) = 1'], [text]) == ['(128, 256) = 1']
      ssl_gain._require_reached({str(tmp_path)!r}, used, [(1, 'control')])
      ssl_gain._require_reached({str(tmp_path)!r}, ignored[:1],
                                [(1, 'control'), (1, 'control_student')])
  """)
  result = _python(['-c', script])
  assert result.returncode != 0
  assert 'control/labeled/InputPipeline.strong_augment = True' in result.stderr
  assert str(tmp_path) in result.stderr
  assert 'Traceback' in result.stderr and 'ValueError' in result.stderr
  # Everything before the last call passed.
  assert "'used'" not in result.stderr and 'AssertionError' not in result.stderr


def test_a_row_is_rescored_from_its_own_checkpoint_once(tmp_path):
  stage = tmp_path / 'seed0' / 'iter1_finetune' / 'checkpoints'
  stage.mkdir(parents=True)
  for suffix in ('index', 'data-00000-of-00001'):
    for step in (200, 300):  # The row's checkpoint and an older one.
      (stage / f'ckpt-{step}.{suffix}').write_text(suffix)
  script = textwrap.dedent(f"""
      import json, os
      from benchmarks import ssl_gain
      calls = []
      def fake_eval(model_dir, bindings, extra_args):
        # What train.py --mode eval would restore: the state file's checkpoint.
        with open(os.path.join(model_dir, 'checkpoints', 'checkpoint')) as f:
          prefix = f.read().split('"')[1]
        files = sorted(os.listdir(os.path.join(model_dir, 'checkpoints')))
        calls.append((list(extra_args), bindings[-1], prefix, files))
        with open(os.path.join(model_dir, 'eval_results.json'), 'w') as f:
          json.dump({{'step': int(prefix.split('-')[1]), 'PQ': 1.5,
                     'mIoU': 2.5}}, f)
      ssl_gain._run_train_py = fake_eval
      row = {{'iteration': 1, 'stage': 'finetune',
              'checkpoint': 'iter1_finetune/checkpoints/ckpt-300'}}
      args = (row, {str(tmp_path / 'seed0')!r}, {str(tmp_path / 'scratch')!r},
              'data/val150', ['STUDENT_STEPS = 3600'])
      assert ssl_gain.rescore(*args) == {{'PQ': 1.5, 'mIoU': 2.5}}
      assert ssl_gain.rescore(*args) == {{'PQ': 1.5, 'mIoU': 2.5}}
      assert calls == [(['--mode', 'eval'],
                        "eval/find_records.cityscapes_root = 'data/val150'",
                        'ckpt-300', ['checkpoint', 'ckpt-300.data-00000-of-00001',
                                     'ckpt-300.index'])], calls
      # A cached score of another step is refused.
      ssl_gain.rescore(dict(row, checkpoint='iter1_finetune/checkpoints/ckpt-200'),
                       *args[1:])
  """)
  result = _python(['-c', script])
  assert result.returncode != 0
  assert 'AssertionError' not in result.stderr, result.stderr
  assert 'scored step 300, not' in result.stderr and 'ckpt-200' in result.stderr


def test_reused_stages_are_linked_relatively_and_a_dangling_link_is_repaired(
    tmp_path):
  # A variant folder whose Teacher link points into a folder since removed
  # (e.g. a deleted worktree) is relinked to the chain's Teacher; the links
  # are relative, so moving the whole --out keeps them working.
  chain = tmp_path / 'out' / 'seed0'
  (chain / 'iter0_teacher').mkdir(parents=True)
  (chain / 'iter0_teacher' / 'DONE').write_text('')
  variant = tmp_path / 'out' / 'seed0_oracle'
  variant.mkdir()
  (variant / 'iter0_teacher').symlink_to(tmp_path / 'gone' / 'iter0_teacher')
  script = textwrap.dedent(f"""
      from benchmarks import ssl_gain
      ssl_gain._link_stages({str(chain)!r}, {str(variant)!r},
                            [(0, 'teacher'), (1, 'pseudo_label')])
  """)
  result = _python(['-c', script])
  assert result.returncode == 0, result.stderr
  assert 'pointed at the missing' in result.stderr
  link = variant / 'iter0_teacher'
  assert os.readlink(link) == os.path.join('..', 'seed0', 'iter0_teacher')
  assert not (variant / 'iter1_pseudo_label').exists()  # No such stage.
  os.rename(tmp_path / 'out', tmp_path / 'moved')
  assert (tmp_path / 'moved' / 'seed0_oracle' / 'iter0_teacher' /
          'DONE').exists()
