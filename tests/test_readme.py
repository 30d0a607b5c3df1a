"""The README runs as printed: its shell and Python blocks, in order, from a fresh folder laid out like the repository.

Conventions (CONTRIBUTING.md, "The README runs"):

- ```` ```bash ```` and ```` ```python ```` blocks run, in the order they appear; other fences (``text``) only show
  something (a layout, a usage line) and never run.
- ``<!-- readme-test: file PATH -->`` right before a block: the block is the content of the file PATH (a config the
  reader saves), written there instead of run.
- ``<!-- readme-test: skip REASON -->`` right before a block: not run, for the reason given (it installs software or
  runs the whole suite); what it shows is tested elsewhere.
- Every ``tools/train.py`` command states its length (``--iters N`` or ``--epochs N``): the test shortens it to 1
  (and reads ``iter_N.pth`` / ``epoch_N.pth`` in later commands as ``iter_1.pth`` / ``epoch_1.pth``), with batch 2
  and no loader worker processes; ``tools/make_demo_data.py`` writes 2 training and 1 validation image per split.

Commands run with the test's Python as ``python`` and this checkout on ``PYTHONPATH``, offline (``HF_HUB_OFFLINE=1``,
which the examples must not need), in a temporary folder holding ``tools`` (linked) and a copy of ``configs``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT

RUNNABLE = ('bash', 'python')
_FENCE = re.compile(r'^```(\S*)\s*$')
_MARKER = re.compile(r'^<!-- readme-test: (?P<kind>skip|file) (?P<argument>.+?) -->$')
_LENGTH = re.compile(r'--(?P<unit>iters|epochs) (?P<count>\d+)')


@dataclass
class Block:
    language: str
    text: str
    line: int  # of the opening fence, 1-based
    marker: str = ''  # 'skip' or 'file'
    argument: str = ''


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a markdown text, each with the readme-test marker on the line before it."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith('```')), None)
        assert end is not None, f'README.md:{i + 1}: a fence that is never closed'
        marker = _MARKER.match(lines[i - 1].strip()) if i else None
        blocks.append(Block(opening.group(1), '\n'.join(lines[i + 1:end]) + '\n', i + 1,
                            *(marker.group('kind', 'argument') if marker else ())))
        i = end + 1
    return blocks


def shortened(script: str, lengths: dict[str, str]) -> str:
    """A shell block with its training runs shortened (the module docstring); ``lengths`` maps the checkpoint
    names of the README's lengths to the shortened ones, across blocks."""
    out = []
    for line in re.sub(r'\s*\\\n\s*', ' ', script).splitlines():
        command, hash_, comment = line.partition(' #')
        if 'tools/train.py' in command:
            found = _LENGTH.search(command)
            assert found, f'a training command that does not state its length (--iters N / --epochs N): {line}'
            unit = found['unit'][:-1] if found['unit'] == 'iters' else 'epoch'
            lengths[f'{unit}_{found["count"]}.pth'] = f'{unit}_1.pth'
            command = _LENGTH.sub(f'--{found["unit"]} 1', command).rstrip() + (
                ' --cfg-options train_dataloader.batch_size=2 train_dataloader.num_workers=0'
                ' train_dataloader.persistent_workers=False val_dataloader.num_workers=0'
                ' val_dataloader.persistent_workers=False')
        if 'tools/make_demo_data.py' in command:
            command += ' --num-train 2 --num-val 1'
        for written, short in lengths.items():
            command = command.replace(written, short)
        out.append(command + (hash_ + comment if hash_ else ''))
    return '\n'.join(out) + '\n'


@pytest.fixture(scope='module')
def readme() -> list[Block]:
    return readme_blocks((REPO_ROOT / 'README.md').read_text())


def test_every_block_is_run_or_marked(readme):
    for block in readme:
        assert block.language, f'README.md:{block.line}: name the fence\'s language (```text for what does not run)'
        if block.marker == 'skip':
            assert block.language in RUNNABLE and len(block.argument) > 10, \
                f'README.md:{block.line}: a skipped block says why (<!-- readme-test: skip REASON -->)'


def test_shortening_rules():
    lengths: dict[str, str] = {}
    script = shortened('python tools/train.py c.py --iters 200 \\\n    --seed 0   # comment\n'
                       'python tools/test.py c.py work_dirs/x/iter_200.pth\npython tools/make_demo_data.py\n', lengths)
    assert script.splitlines()[0].startswith('python tools/train.py c.py --iters 1 --seed 0 --cfg-options ')
    assert script.splitlines()[0].endswith(' # comment')
    assert 'work_dirs/x/iter_1.pth' in script and script.splitlines()[2].endswith('--num-train 2 --num-val 1')
    with pytest.raises(AssertionError, match='does not state its length'):
        shortened('python tools/train.py c.py\n', {})


@pytest.mark.slow
def test_readme_runs_as_printed(readme, tmp_path):
    shutil.copytree(REPO_ROOT / 'configs', tmp_path / 'configs')
    (tmp_path / 'tools').symlink_to(REPO_ROOT / 'tools')
    shims = tmp_path / '.shims'
    shims.mkdir()
    shim = shims / 'python'  # a script, not a link: a link to a venv's python loses the venv
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f'{shims}{os.pathsep}{os.environ["PATH"]}', PYTHONPATH=str(REPO_ROOT),
               HF_HUB_OFFLINE='1', OMP_NUM_THREADS='2', PYTHONUNBUFFERED='1')
    lengths: dict[str, str] = {}
    for block in readme:
        if block.marker == 'skip' or block.language not in RUNNABLE:
            continue
        if block.marker == 'file':
            path = tmp_path / block.argument
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
            continue
        if block.language == 'bash':
            command = ['bash', '-euo', 'pipefail', '-c', shortened(block.text, lengths)]
        else:
            command = [sys.executable, '-c', block.text]
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (f'README.md:{block.line} ({block.language} block) failed with exit code '
                                      f'{proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
