"""timm's own tests/test_models.py on the project's models (tools/run_timm_suite.py), fast part.

The fast part is every default-config test plus forward, backward, FX (forward and backward) and
TorchScript on the smallest model of each family; the full run's table is benchmarks/timm_suite.md.
timm's file comes from timm's source distribution on the package index, fetched at test time.
"""
from __future__ import annotations

import pytest

from visionattn.errors import MissingFileError
from visionattn.timm_suite import (FAST_ALL_MODELS, FAST_SMALLEST_MODEL, fetch_test_file, model_family,
                                   project_models, results_table, run_timm_suite)


@pytest.mark.slow
def test_fast_part_of_timms_model_suite_passes(tmp_path_factory):
    try:
        test_file = fetch_test_file()
    except MissingFileError as err:
        pytest.skip(f"timm's source distribution is not reachable on the package index, so its test-suite cannot "
                    f'run here: {err}')
    # two single-threaded processes: most of timm's suite is Python (building models on the meta device,
    # tracing, scripting), so two workers use two cores better than one worker with two threads
    run = run_timm_suite(test_file, fast=True, threads=1, workers=2)
    failures = [f"{o['test']}[{o['model']}]: {o['message']}" for o in run.outcomes if o['outcome'] == 'failed']
    assert not failures, '\n'.join(failures)
    ran = {(o['test'], o['model'].split('.')[0]) for o in run.outcomes if o['outcome'] == 'passed'}
    models = project_models()
    for model in models:
        assert ('test_model_default_cfgs', model) in ran  # no project model is a timm "non-standard" model
    assert set(run.smallest) == {model_family(m) for m in models}
    for family, model in run.smallest.items():
        for test in FAST_SMALLEST_MODEL:
            assert (test, model) in ran or any(o['test'] == test and o['model'] == model and o['outcome'] == 'skipped'
                                               for o in run.outcomes), (family, test)
    assert {o['test'] for o in run.outcomes} <= set(FAST_ALL_MODELS) | set(FAST_SMALLEST_MODEL)


def test_results_table_counts_per_family_and_test():
    after = [dict(test='test_model_forward', model='nat_mini', family='nat', outcome='passed', message=''),
             dict(test='test_model_forward', model='nat_tiny', family='nat', outcome='failed', message='boom'),
             dict(test='test_model_default_cfgs', model='nat_mini.in1k', family='nat', outcome='skipped',
                  message='too big')]
    before = [dict(after[0], outcome='failed', message='TypeError')]
    table = results_table(after, before)
    assert '| family | default_cfgs | forward |' in table
    assert '| nat | - → 0/0/1 | 0/1/0 → 1/1/0 |' in table
    assert '- `test_model_forward` (nat_tiny): boom' in table and '- `test_model_default_cfgs` (nat_mini.in1k): too big' in table
