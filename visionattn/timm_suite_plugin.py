"""pytest plugin that points timm's own ``tests/test_models.py`` at this project's models.

Loaded by :func:`visionattn.timm_suite.run_timm_suite` (``pytest -p visionattn.timm_suite_plugin``) next
to an unmodified copy of timm's file. It imports :mod:`visionattn` (which registers the models) before
the file is collected, and then, through pytest's own hooks only:

- narrows every test that timm parametrizes over ``list_models(...)`` to the project's models that
  timm's own filters let through (exclude filters, ``name_matches_cfg``, pretrained tags) and drops
  the tests written for named timm models (``['resnet18', ...]``) or for no model at all;
- applies the two ``forward_intermediates`` tests, which timm lists by module name
  (``FEAT_INTER_FILTERS``: the modules whose models implement ``forward_intermediates`` and the
  feature-getter wrapper), to every project model that implements ``forward_intermediates``, as timm
  does when it adds a module to that list;
- skips ``test_model_load_pretrained`` / ``test_model_features_pretrained`` (defined only outside
  GitHub Actions, so timm's CI does not run them either): they download the official weights, which
  live on OneDrive, shi-labs.com and Google Drive, not on the Hugging Face hub;
- ``--visionattn-fast``: every default-config test, and forward, backward, FX and TorchScript only on
  the smallest model (by parameter count) of each family (:func:`visionattn.timm_suite.model_family`;
  ``--visionattn-smallest`` names them when the caller has counted already);
- ``--visionattn-shard K/N``: only every N-th of the selected tests, from the K-th (parallel runs);
- ``--visionattn-report FILE``: writes every test's outcome as JSON for the result table.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import pytest

import visionattn  # noqa: F401  (registers the project's models in timm before timm's file is collected)
from visionattn.timm_suite import (FAST_ALL_MODELS, FAST_SMALLEST_MODEL, has_forward_intermediates, model_family,
                                   project_models, smallest_per_family)

_PRETRAINED_DOWNLOAD_TESTS = ('test_model_load_pretrained', 'test_model_features_pretrained')
_PRETRAINED_SKIP_REASON = ('downloads the official weights (OneDrive, shi-labs.com, Google Drive; not on the '
                           'Hugging Face hub), which this run cannot reach; timm defines this test only outside '
                           'GitHub Actions, so its own CI does not run it either')
_TIMM_MARKERS = ('base', 'cfg', 'cfg_nonstd', 'forward', 'backward', 'torchscript', 'features', 'fxforward',
                 'fxbackward', 'timeout(seconds)')


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup('visionattn', "timm's test_models.py on visionattn's models")
    group.addoption('--visionattn-models', default='', help='comma-separated project models (default: all)')
    group.addoption('--visionattn-fast', action='store_true',
                    help='default-config tests on every model; forward/backward/FX/TorchScript on the '
                         'smallest model of each family')
    group.addoption('--visionattn-smallest', default='', help='with --visionattn-fast: the smallest model of each '
                    'family, comma-separated (default: counted here)')
    group.addoption('--visionattn-shard', default='0/1', help='K/N: run every N-th selected test from the K-th')
    group.addoption('--visionattn-report', default='', help='write every outcome to this JSON file')


def pytest_configure(config: pytest.Config) -> None:
    for marker in _TIMM_MARKERS:
        config.addinivalue_line('markers', f"{marker}: a marker of timm's test_models.py")
    names = project_models()
    wanted = [n.strip() for n in config.getoption('--visionattn-models').split(',') if n.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise pytest.UsageError(f'--visionattn-models: {unknown} are not models of visionattn; its models: {names}')
    try:
        shard, shards = (int(part) for part in config.getoption('--visionattn-shard').split('/'))
    except ValueError:
        raise pytest.UsageError('--visionattn-shard: give K/N, e.g. 0/2') from None
    smallest = {n.strip() for n in config.getoption('--visionattn-smallest').split(',') if n.strip()} or None
    config.pluginmanager.register(_TimmSuite(wanted or names, config.getoption('--visionattn-fast'), smallest,
                                             (shard, shards), config.getoption('--visionattn-report')),
                                  'visionattn-timm-suite')


def _base(model_name: str) -> str:
    return model_name.split('.')[0]


class _TimmSuite:
    """The hooks that select the project's tests and record their outcomes."""

    def __init__(self, selected: list[str], fast: bool, smallest: Optional[set[str]], shard: tuple[int, int],
                 report_path: str) -> None:
        self.selected = selected
        self.fast = fast
        self.shard = shard
        self.report_path = report_path
        self._smallest = smallest
        self.items: dict[str, dict[str, str]] = {}
        self.outcomes: dict[str, dict[str, Any]] = {}

    @property
    def smallest(self) -> set[str]:
        if self._smallest is None:
            self._smallest = set(smallest_per_family(self.selected).values())
        return self._smallest

    def _models_for(self, metafunc: pytest.Metafunc, values: list[Any]) -> list[Any]:
        test = metafunc.definition.originalname
        if self.fast and test not in FAST_ALL_MODELS + FAST_SMALLEST_MODEL:
            return []
        kept = [v for v in values if isinstance(v, str) and _base(v) in self.selected]
        if not kept and self._is_feature_intermediates_list(metafunc, values):
            kept = [n for n in self.selected if has_forward_intermediates(n)]
        if self.fast and test in FAST_SMALLEST_MODEL:
            return [v for v in kept if _base(v) in self.smallest]
        return kept

    @staticmethod
    def _is_feature_intermediates_list(metafunc: pytest.Metafunc, values: list[Any]) -> bool:
        """Whether ``values`` is timm's ``list_models(module=FEAT_INTER_FILTERS, ...)`` (models listed by module)."""
        module_list = getattr(metafunc.module, 'FEAT_INTER_FILTERS', None)
        if module_list is None:
            return False
        from timm import list_models
        return list(values) == list_models(module=module_list,
                                           exclude_filters=getattr(metafunc.module, 'EXCLUDE_FILTERS', []))

    @pytest.hookimpl(tryfirst=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Replace each ``model_name`` parametrization by the project's models it should cover
        (before pytest's own hook expands the marks)."""
        markers = metafunc.definition.own_markers
        for index, mark in enumerate(markers):
            if mark.name == 'parametrize' and mark.args and mark.args[0] == 'model_name':
                markers[index] = pytest.mark.parametrize(
                    'model_name', self._models_for(metafunc, list(mark.args[1])), **mark.kwargs).mark

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Keep only the tests of project models; remember which test and model each one is."""
        kept, deselected = [], []
        for item in items:
            callspec = getattr(item, 'callspec', None)
            model = callspec.params.get('model_name') if callspec is not None else None
            if not isinstance(model, str) or _base(model) not in self.selected:
                deselected.append(item)
                continue
            if item.originalname in _PRETRAINED_DOWNLOAD_TESTS:
                item.add_marker(pytest.mark.skip(reason=_PRETRAINED_SKIP_REASON))
            kept.append(item)
        shard, shards = self.shard
        deselected += [item for i, item in enumerate(kept) if i % shards != shard]
        kept = kept[shard::shards]
        for item in kept:
            model = item.callspec.params['model_name']
            self.items[item.nodeid] = dict(test=item.originalname, model=model, family=model_family(_base(model)))
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        items[:] = kept

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """One outcome per test: the first phase that failed or skipped, else the call's pass."""
        item = self.items.get(report.nodeid)
        if item is None or report.nodeid in self.outcomes:
            return
        if report.when != 'call' and report.outcome == 'passed':
            return
        message = ''
        if report.outcome == 'skipped' and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2]).removeprefix('Skipped: ')
        elif report.outcome == 'failed':
            crash = getattr(report.longrepr, 'reprcrash', None)
            message = crash.message if crash is not None else str(report.longrepr)
        first_line = next((line.strip() for line in message.splitlines() if line.strip()), '')[:300]
        self.outcomes[report.nodeid] = dict(item, outcome=report.outcome, message=first_line,
                                            seconds=round(report.duration, 2))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.report_path:
            with open(self.report_path, 'w') as f:
                json.dump(list(self.outcomes.values()), f, indent=1)
