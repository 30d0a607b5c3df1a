"""Run timm's own model test-suite (``tests/test_models.py``) on this project's models.

timm states what a model in its registry must do in that file: default configs that match the
network, forward/backward, FX tracing, TorchScript, feature extraction. The file ships only in timm's
source distribution, so :func:`fetch_test_file` downloads the sdist of the installed timm version from
the package index (``pip download --no-deps --no-binary :all: timm==X``) and extracts it into a cache
folder; nothing of it is kept in the project. :func:`run_timm_suite` runs that unmodified file under
:mod:`visionattn.timm_suite_plugin`, which limits it to the project's models, and returns every
test's outcome; :func:`results_table` turns outcomes into the per-family table of
``benchmarks/timm_suite.md``. The program is ``tools/run_timm_suite.py``.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import timm
import torch
from torch import nn

from .errors import ConfigError, MissingFileError

__all__ = ['FAST_ALL_MODELS', 'FAST_SMALLEST_MODEL', 'SuiteRun', 'fetch_test_file', 'has_forward_intermediates',
           'model_family', 'project_models', 'results_table', 'run_timm_suite', 'smallest_per_family']

# The fast part (CI): these tests on every model ...
FAST_ALL_MODELS = ('test_model_default_cfgs', 'test_model_default_cfgs_non_std')
# ... and these on the smallest model of each family.
FAST_SMALLEST_MODEL = ('test_model_forward', 'test_model_backward', 'test_model_forward_fx', 'test_model_backward_fx',
                       'test_model_forward_torchscript')
DEFAULT_CACHE = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'visionattn' / 'timm-sdist'


def project_models() -> list[str]:
    """The timm model names this project registers (``import visionattn`` registers them)."""
    import visionattn  # noqa: F401
    return sorted(n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith('visionattn.'))


def model_family(name: str) -> str:
    """The family a project model belongs to, for the result table and the fast part's choice: its model
    file, NAT split into NAT, DiNAT and the isotropic models, the CNNs by attention module (``'triplet'``
    for ResNets and MobileNetV2 with Triplet attention)."""
    module = timm.models.model_entrypoint(name).__module__.rsplit('.', 1)[-1]
    if module == 'nat':
        return 'nat_isotropic' if 'isotropic' in name else 'dinat' if name.startswith('dinat') else 'nat'
    if module == 'cnn_attention':
        from .layers.cnn_attention import CNN_ATTENTION_LAYERS
        return next(part for part in name.split('_') if part in CNN_ATTENTION_LAYERS)
    return module


def create_meta_model(name: str) -> nn.Module:
    """The model ``name`` on the meta device (no memory, no weights): for counting and inspecting."""
    with torch.device('meta'):
        return timm.create_model(name, pretrained=False)


def has_forward_intermediates(name: str) -> bool:
    return hasattr(create_meta_model(name), 'forward_intermediates')


def smallest_per_family(names: Iterable[str]) -> dict[str, str]:
    """``{family: its model with the fewest parameters}`` among ``names``."""
    best: dict[str, tuple[int, str]] = {}
    for name in names:
        count = sum(p.numel() for p in create_meta_model(name).parameters())
        family = model_family(name)
        best[family] = min(best.get(family, (count, name)), (count, name))
    return {family: name for family, (_, name) in sorted(best.items())}


def fetch_test_file(version: str = timm.__version__, cache_dir: Path = DEFAULT_CACHE,
                    sdist: Optional[Path] = None) -> Path:
    """``tests/test_models.py`` of timm ``version``, from its sdist (downloaded once into ``cache_dir``).

    ``sdist``: a ``timm-<version>.tar.gz`` already on disk (offline runs) instead of the package index.
    """
    target = Path(cache_dir) / version / 'test_models.py'
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if sdist is None:
        download = subprocess.run(
            [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:', '--disable-pip-version-check',
             '--quiet', f'timm=={version}', '-d', str(target.parent)], capture_output=True, text=True)
        sdist = target.parent / f'timm-{version}.tar.gz'
        if download.returncode or not sdist.is_file():
            reason = (download.stderr.strip().splitlines() or ['no sdist written'])[-1]
            raise MissingFileError(f"could not download timm {version}'s source distribution from the package index "
                                   f"({reason}); download it elsewhere (pip download --no-deps --no-binary :all: "
                                   f'timm=={version}) and pass --sdist PATH')
    if not Path(sdist).is_file():
        raise MissingFileError(f'{sdist} does not exist: give the path of timm-{version}.tar.gz')
    member = f'timm-{version}/tests/test_models.py'
    with tarfile.open(sdist) as archive:
        try:
            source = archive.extractfile(member)
        except KeyError:
            raise MissingFileError(f'{sdist} has no {member}: give the sdist of timm {version}') from None
        target.write_bytes(source.read())
    return target


@dataclass(frozen=True)
class SuiteRun:
    """One run: every test's outcome (test, model, family, outcome, message, seconds), the wall and CPU
    time, pytest's (worst) exit status and its summary line(s), and for the fast part the smallest model
    of each family it chose (``{family: model}``, empty otherwise)."""

    outcomes: list[dict[str, Any]]
    seconds: float
    cpu_seconds: float
    returncode: int
    summary: str
    smallest: dict[str, str]


def run_timm_suite(test_file: Path, models: Sequence[str] = (), fast: bool = False, threads: Optional[int] = None,
                   pytest_args: Sequence[str] = (), log: Optional[Path] = None, workers: int = 1) -> SuiteRun:
    """Run timm's ``test_file`` on the project's ``models`` (all if empty) in pytest subprocesses.

    Run as timm's maintainers run it locally (``GITHUB_ACTIONS`` unset, so the FX + TorchScript test
    is defined), on the CPU (``TORCH_DEVICE`` unset), with ``threads`` intra-op threads per process if
    given, the tests shared out over ``workers`` processes running at once (much of timm's suite is
    single-threaded Python: building models, tracing, scripting). pytest's output goes to ``log``
    (``log.<k>`` for worker k) while it runs, one line per test, if given.
    """
    if workers < 1:
        raise ConfigError(f'workers must be at least 1, got {workers}')
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    test_file = Path(test_file)
    names = list(models) or project_models()
    with tempfile.TemporaryDirectory(prefix='timm_suite_') as tmp:
        ini = Path(tmp) / 'pytest.ini'
        ini.write_text('[pytest]\n')  # not the project's pytest.ini
        command = [sys.executable, '-m', 'pytest', str(test_file), '-c', str(ini), '--rootdir', str(test_file.parent),
                   '-p', 'visionattn.timm_suite_plugin', '-p', 'no:cacheprovider', '-v', '--disable-warnings',
                   '--visionattn-models', ','.join(names)]
        smallest = smallest_per_family(names) if fast else {}
        if fast:
            command += ['--visionattn-fast', '--visionattn-smallest', ','.join(smallest.values())]
        env = {k: v for k, v in os.environ.items() if k not in ('GITHUB_ACTIONS', 'TORCH_DEVICE', 'TORCH_BACKEND')}
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        logs = [Path(tmp) / f'pytest.{k}.log' if log is None else Path(log) if workers == 1 else Path(f'{log}.{k}')
                for k in range(workers)]
        reports = [Path(tmp) / f'report.{k}.json' for k in range(workers)]
        processes = []
        for k in range(workers):
            with open(logs[k], 'w') as output:
                processes.append(subprocess.Popen(
                    command + ['--visionattn-shard', f'{k}/{workers}', '--visionattn-report', str(reports[k]),
                               *pytest_args], env=env, stdout=output, stderr=subprocess.STDOUT, text=True))
        returncodes = [process.wait() for process in processes]
        seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_start
        outcomes, summaries = [], []
        for k in range(workers):
            lines = logs[k].read_text().strip().splitlines() or ['']
            if not reports[k].is_file():
                raise RuntimeError(f'timm test suite did not run (exit {returncodes[k]}):\n' + '\n'.join(lines[-60:]))
            outcomes += json.loads(reports[k].read_text())
            summaries.append(lines[-1].strip('= '))
    return SuiteRun(outcomes=outcomes, seconds=round(seconds, 1), cpu_seconds=round(cpu_seconds, 1),
                    returncode=max(returncodes), summary='; '.join(summaries), smallest=smallest)


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children: unlike wall time, independent of
    what else runs on the machine."""
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def _counts(outcomes: Iterable[dict[str, Any]]) -> dict[tuple[str, str], Counter]:
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for o in outcomes:
        counts[o['family'], o['test']][o['outcome']] += 1
    return counts


def _cell(counter: Optional[Counter]) -> str:
    if not counter:
        return '-'
    return f"{counter['passed']}/{counter['failed']}/{counter['skipped']}"


def results_table(outcomes: Sequence[dict[str, Any]], before: Optional[Sequence[dict[str, Any]]] = None) -> str:
    """Markdown: per family (rows) and test (columns) ``passed/failed/skipped``, ``before -> after`` if
    ``before`` is given; then every failure and skip with its message."""
    after_counts = _counts(outcomes)
    before_counts = _counts(before) if before is not None else {}
    keys = set(after_counts) | set(before_counts)
    families = sorted({f for f, _ in keys})
    tests = sorted({t for _, t in keys}, key=lambda t: (t not in FAST_ALL_MODELS, t))
    short = [t.removeprefix('test_model_') for t in tests]
    lines = ['| family | ' + ' | '.join(short) + ' |', '|---' * (len(tests) + 1) + '|']
    for family in families:
        cells = []
        for test in tests:
            cell = _cell(after_counts.get((family, test)))
            if before is not None:
                cell = f'{_cell(before_counts.get((family, test)))} → {cell}'
            cells.append(cell)
        lines.append(f'| {family} | ' + ' | '.join(cells) + ' |')
    total = Counter(o['outcome'] for o in outcomes)
    lines += ['', f"Total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped "
                  f'(cells: passed/failed/skipped).']
    for outcome in ('failed', 'skipped'):
        grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
        for o in outcomes:
            if o['outcome'] == outcome:
                grouped[o['test'], o['message']].append(o['model'])
        if grouped:
            lines += ['', f'{outcome.capitalize()}:']
            lines += [f'- `{test}` ({", ".join(sorted(models))}): {message}'
                      for (test, message), models in sorted(grouped.items())]
    return '\n'.join(lines)
