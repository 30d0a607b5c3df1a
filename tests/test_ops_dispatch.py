"""The capability table: one rule for every op and backend (explicit request -> error, 'auto' -> fallback)."""
from __future__ import annotations

import pytest
import torch

from visionattn.errors import UnknownNameError, UnsupportedBackendError
from visionattn.ops import bra_attention, na2d, use_backend
from visionattn.ops import dispatch
from visionattn.ops.dispatch import CAPABILITIES, select_backend, unsupported_reason


def test_every_op_has_a_torch_path_that_runs_anything():
    for op, table in CAPABILITIES.items():
        assert table['torch'] == dispatch.Capability(), op
        assert unsupported_reason(op, 'torch', torch.device('cpu'), torch.float64, 4096) is None


@pytest.mark.parametrize('op', sorted(CAPABILITIES))
def test_named_backend_errors_and_auto_falls_back(op, monkeypatch):
    monkeypatch.setenv('TRITON_INTERPRET', '1')  # Triton can run CPU tensors: only dtype/head_dim limit it
    q = torch.zeros(1, 4, 4, 2, 8)
    assert select_backend(op, 'triton', q) == 'triton'
    assert select_backend(op, 'auto', q) == 'torch'  # 'auto' never picks the interpreter on CPU
    for bad, why in ((q.double(), 'not float64'), (torch.zeros(1, 4, 4, 2, 256), 'head_dim <= 128, not 256')):
        with pytest.raises(UnsupportedBackendError, match=f"'triton' cannot run {op} here: .*{why}"):
            select_backend(op, 'triton', bad)
        assert select_backend(op, 'auto', bad) == 'torch'
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    with pytest.raises(UnsupportedBackendError, match='tensors are on cpu.*TRITON_INTERPRET=1'):
        select_backend(op, 'triton', q)


def test_auto_on_cuda_picks_triton_only_where_it_can(monkeypatch):
    monkeypatch.setattr(dispatch, 'triton_importable', lambda: True)
    q = torch.empty(1, 4, 4, 2, 8, device='meta')
    monkeypatch.setitem(dispatch.AUTO_ORDER, 'meta', ('triton', 'torch'))
    monkeypatch.setitem(CAPABILITIES['na'], 'triton', dispatch.Capability(devices=('meta',), max_head_dim=128,
                                                                          needs_triton=True))
    assert select_backend('na', None, q) == 'triton'
    assert select_backend('na', None, torch.empty(1, 4, 4, 2, 160, device='meta')) == 'torch'
    monkeypatch.setattr(dispatch, 'triton_importable', lambda: False)
    assert select_backend('na', None, q) == 'torch'
    with pytest.raises(UnsupportedBackendError, match='Triton is not installed'):
        select_backend('na', 'triton', q)


def test_unknown_backend_names_the_choices(monkeypatch):
    with pytest.raises(UnknownNameError, match=r"unknown attention backend 'tritn'; choose one of \('auto'"):
        select_backend('na', 'tritn', torch.zeros(1, 4, 4, 1, 4))
    with pytest.raises(UnknownNameError):
        with use_backend('cuda'):
            pass
    monkeypatch.setenv('VISIONATTN_BACKEND', 'nope')
    with pytest.raises(UnknownNameError, match="'nope'"):
        na2d(*(torch.zeros(1, 6, 6, 1, 4),) * 3, 3)


def test_ops_consult_the_table(monkeypatch):
    """Both front-ends ask select_backend: a float64 call under use_backend('triton') fails the same way."""
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    q = torch.zeros(1, 4, 4, 1, 8, dtype=torch.float64)
    index = torch.zeros(1, 4, 1, dtype=torch.long)
    with use_backend('triton'):
        with pytest.raises(UnsupportedBackendError, match="cannot run na here"):
            na2d(q, q, q, 3)
        with pytest.raises(UnsupportedBackendError, match="cannot run bra here"):
            bra_attention(q, q, q, index, 2)


# ---------------------------------------------------------------------------------------------
# 'auto' on CUDA: the faster of 'triton' and 'flex' from a measured table (issue 17 item 4)
# ---------------------------------------------------------------------------------------------

def write_table(path, ops) -> str:
    import json
    path.write_text(json.dumps({'device': 'synthetic', 'ops': ops}))
    return str(path)


def test_auto_on_cuda_follows_the_measured_table(tmp_path, monkeypatch):
    cuda, half = torch.device('cuda'), torch.float16
    monkeypatch.setenv('VISIONATTN_AUTO_TABLE', write_table(tmp_path / 'auto.json', {
        'na': {'triton': 2.0, 'flex': 1.5}, 'bra': {'triton': 1.0, 'flex': 3.0}}))
    assert dispatch.auto_backend('na', cuda, half, 32) == 'flex'
    assert dispatch.auto_backend('bra', cuda, half, 32) == 'triton'
    assert dispatch.auto_backend('bra', cuda, half, 256) == 'flex'  # the faster one cannot run it: the next
    assert dispatch.auto_backend('na', cuda, torch.float64, 32) == 'torch'  # neither can
    assert dispatch.auto_backend('na', torch.device('cpu'), torch.float32, 32) == 'torch'  # CPU: no table
    assert select_backend('na', 'auto', torch.zeros(1, 4, 4, 2, 8)) == 'torch'


def test_auto_on_cuda_without_a_measurement_runs_triton(tmp_path):
    cuda, half = torch.device('cuda'), torch.float16
    assert dispatch.auto_backend('na', cuda, half, 32, table={}) == 'triton'  # no table committed
    table = dispatch.load_auto_table(write_table(tmp_path / 'auto.json', {
        'na': {'triton': None, 'flex': 1.0}, 'bra': {'triton': 2.0, 'flex': None}}))
    assert dispatch.auto_order('na', 'cuda', table) == ('flex', 'triton', 'torch')  # triton failed there
    assert dispatch.auto_order('bra', 'cuda', table) == ('triton', 'flex', 'torch')
    assert dispatch.auto_order('other', 'cuda', table) == ('triton', 'torch')  # not measured: the default


def test_a_bad_measured_table_is_a_user_error(tmp_path):
    from visionattn.errors import ConfigError, MissingFileError
    with pytest.raises(MissingFileError, match='does not exist'):
        dispatch.load_auto_table(tmp_path / 'none.json')
    (tmp_path / 'broken.json').write_text('{"ops": ')
    with pytest.raises(ConfigError, match='not readable JSON'):
        dispatch.load_auto_table(tmp_path / 'broken.json')
    with pytest.raises(ConfigError, match='must hold'):
        dispatch.load_auto_table(write_table(tmp_path / 'odd.json', {'na': {'triton': 'fast'}}))
