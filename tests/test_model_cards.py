"""visionattn.analysis.model_cards (tools/model_cards.py): the cards are current, complete, and say what
the sources say."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from visionattn.analysis import model_cards
from visionattn.analysis.architecture import architecture
from visionattn.analysis.model_cards import FACTS, CardPaths
from visionattn.cli import model_cards as model_cards_program

PATHS = CardPaths(REPO_ROOT)


def test_every_card_and_the_readme_tables_are_up_to_date() -> None:
    """Fails when a model, its metadata, reported results or measurements changed without regenerating."""
    problems = model_cards.check(PATHS)
    assert not problems, '\n'.join(problems) + '\nRun: python tools/model_cards.py (and --measure --missing)'


def test_the_carded_models_are_the_project_entry_points_and_the_reported_timm_models() -> None:
    import timm
    models = model_cards.registered_models(model_cards.load_reported(PATHS))
    own = {n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith('visionattn.')}
    reported = {n for entries in model_cards.load_reported(PATHS).values() for n in entries}
    assert set(models) == own | reported
    assert models['davit_tiny'] == 'davit' and models['halonet_h1'] == 'halonet'
    assert models['resnet50_cbam'] == 'cnn_attention'
    assert not set(models) & {'davit_large', 'resnet50'}  # timm models nobody reported stay out


def test_a_reported_name_that_is_no_model_is_an_error() -> None:
    with pytest.raises(KeyError, match="'davit_tinny'"):
        model_cards.registered_models({'davit': {'davit_tinny': {'weights': {}, 'results': []}}})
    with pytest.raises(ValueError, match='cnn_attention.json'):
        model_cards.registered_models({'davit': {'resnet50_cbam': {'weights': {}, 'results': []}}})


def test_architecture_is_read_from_the_model() -> None:
    arch = architecture('resnet18_cbam')
    assert arch['stages'] == [dict(stride=2, channels=64), dict(stride=4, channels=64), dict(stride=8, channels=128),
                              dict(stride=16, channels=256), dict(stride=32, channels=512)]
    assert arch['attention'] == [dict(stride=s, layer='CBAM', params=dict(spatial_kernel=7), count=2)
                                 for s in (4, 8, 16, 32)]
    assert arch['input_multiple'] == 1
    halo = architecture('halonet26t')
    assert halo['input_multiple'] == 256
    assert [(a['stride'], a['count'], a['params']['block_size']) for a in halo['attention']] == [(16, 1, 8), (32, 2, 8)]


def _model(family: str, attention: list[dict], side: int = 224) -> model_cards.Model:
    return model_cards.Model(name='x', family=family, pretrained_cfgs={}, reported={},
                             measured=dict(attention=attention, input_size=[3, side, side]))


def test_neighbourhood_attention_limits_are_computed_from_the_layers() -> None:
    layers = [dict(stride=4, layer='NeighborhoodAttention2D', count=2, params=dict(kernel_size=7, dilation=8, heads=2)),
              dict(stride=32, layer='NeighborhoodAttention2D', count=5, params=dict(kernel_size=7, dilation=1, heads=16))]
    facts = ' '.join(FACTS['neighborhood'](_model('nat', layers)))
    assert 'dilations used: [1, 8]' in facts and 'side below 224 px' in facts
    assert 'window spans 224 input pixels per side at dilation 8' in facts
    assert 'already below' not in facts
    assert 'already below' in ' '.join(FACTS['neighborhood'](_model('nat', layers, side=160)))


def test_routing_limits_are_computed_from_the_layers() -> None:
    layers = [dict(stride=s, layer='BiLevelRoutingAttention', count=2, params=dict(n_win=7, topk=k, heads=2))
              for s, k in ((4, 1), (8, 4), (16, 16))]
    facts = ' '.join(FACTS['routing'](_model('biformer', layers)))
    assert 'stride 4: top-1 of 49 regions of 8x8 tokens = 64 keys per query' in facts
    assert 'stride 16: top-16 of 49 regions of 2x2 tokens = 64 keys per query' in facts
    assert 'not a multiple of 112 px' in facts


def test_check_finds_edited_extra_and_unmeasured_cards(tmp_path) -> None:
    paths = CardPaths(tmp_path)
    cards = paths.cards
    shutil.copytree(PATHS.cards, cards)
    shutil.copytree(PATHS.configs, paths.configs)
    shutil.copy(PATHS.readme, paths.readme)
    before = set(model_cards.check(paths))  # empty once every model is measured (the test above)

    card = cards / 'resnet50_cbam.md'
    card.write_text(card.read_text().replace('Paper:', 'Paper (edited):'))
    (cards / 'resnet51.md').write_text('# resnet51\n')
    measurements = json.loads((cards / 'measurements.json').read_text())
    del measurements['models']['davit_tiny']['cpu']
    (cards / 'measurements.json').write_text(json.dumps(measurements))
    problems = '\n'.join(set(model_cards.check(paths)) - before)
    assert 'model_cards/resnet50_cbam.md is out of date' in problems
    assert 'model_cards/resnet51.md belongs to no registered model' in problems
    assert "davit_tiny has no measured ['cpu']" in problems
    assert 'model_cards/davit_tiny.md is out of date' in problems  # the card said what was measured

    assert model_cards.write(paths)  # still reports the missing measurement ...
    assert not (cards / 'resnet51.md').exists()  # ... but rewrites the cards and removes the stray one
    assert 'GPU: not measured' in (cards / 'davit_tiny.md').read_text()
    assert '- CPU: not measured.' in (cards / 'davit_tiny.md').read_text()


def test_measure_merges_rows_into_the_measurements(tmp_path) -> None:
    """The bookkeeping of --measure: entries, run records, errors (the measurement itself is test_benchmark's)."""
    paths = CardPaths(tmp_path)
    shutil.copytree(PATHS.reported, paths.reported)
    path = paths.measurements
    path.write_text(json.dumps(dict(runs={'cpu-old': dict(cpu='old')},
                                    models={'resnet18_cbam': dict(cpu=dict(run='cpu-old'))})))

    def run_isolated(spec, timeout_s):
        if spec.model == 'resnet18_ela':
            return dict(spec={}, error=f'timed out after {timeout_s:g} s')
        return dict(spec={}, params=1, flops=2, input_size=[3, 224, 224], threads=1,
                    infer=dict(batch=spec.batch, ms=1.0, img_s=4e3, peak_mib=1.0),
                    train=dict(batch=spec.train_batch, ms=2.0, img_s=1e3, peak_mib=2.0))

    model_cards.measure(paths, ['resnet18_cbam', 'resnet18_ela'], batch=4, train_batch=2, threads=1, timeout_s=9,
                        budget_s=1, device='cpu', command='python tools/model_cards.py --measure', run_row=run_isolated)
    data = json.loads(path.read_text())
    run = data['models']['resnet18_cbam']['cpu']['run']
    assert list(data['runs']) == [run]  # the old run is no longer referenced
    assert data['runs'][run]['settings'] == dict(batch=4, train_batch=2, budget_s=1, timeout_s=9)
    assert data['runs'][run]['command'] == 'python tools/model_cards.py --measure'
    assert data['models']['resnet18_cbam']['cpu']['infer']['batch'] == 4
    assert data['models']['resnet18_ela']['cpu'] == dict(run=run, error='timed out after 9 s')
    assert data['models']['resnet18_ela']['attention'][0]['layer'] == 'ELA'  # the layout is read anyway


def test_reported_files_follow_the_schema() -> None:
    for family, entries in model_cards.load_reported(PATHS).items():
        for name, entry in entries.items():
            assert set(entry) == {'weights', 'results'}, (family, name)
            assert set(entry['weights']) == {'source', 'license'}, (family, name)
            for result in entry['results']:
                assert {'task', 'metric', 'value', 'source'} <= set(result), (family, name, result)
                assert isinstance(result['value'], (int, float)), (family, name, result)


def test_cards_link_to_existing_configs() -> None:
    for card in PATHS.cards.glob('*.md'):
        for link in Path(card).read_text().split('](../')[1:]:
            target = link.split(')')[0]
            if target.startswith('configs/'):
                assert (REPO_ROOT / target).is_file(), (card.name, target)


def test_the_program_checks_and_names_what_is_out_of_date(tmp_path, capsys) -> None:
    paths = CardPaths(tmp_path)
    shutil.copytree(PATHS.cards, paths.cards)
    shutil.copytree(PATHS.configs, paths.configs)
    shutil.copy(PATHS.readme, paths.readme)
    model_cards_program.main(['--check', '--root', str(tmp_path)])  # up to date: returns
    (paths.cards / 'nat_mini.md').write_text('edited')
    with pytest.raises(SystemExit) as exit_info:
        model_cards_program.main(['--check', '--root', str(tmp_path)])
    assert exit_info.value.code == 1
    assert 'model_cards/nat_mini.md is out of date' in capsys.readouterr().err
