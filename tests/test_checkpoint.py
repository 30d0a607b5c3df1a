"""Checkpoint files and pretrained weights: damaged, foreign, mismatched or unreachable ones stop with one clear
message; strict by default, non-strict loads what fits; writes are atomic; pretrained weights load in
init_weights() and never touch the network otherwise."""
from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from visionattn.checkpoint import (describe_checkpoint, load_checkpoint_file, load_state_dict_checked, read_checkpoint,
                                   verify_checkpoint, write_atomically)
from visionattn.errors import CheckpointError, MissingFileError, WeightsUnavailableError
from visionattn.mm.backbones import TimmBackbone

POINTERS = ('model.backbone.pretrained=PATH', 'pretrained_cfg_overlay=dict(file=PATH)', "'local-dir:FOLDER'")


class RunsCode:
    """Pickles as a call that would create a file: safe loading must refuse it without running it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _good(path: Path) -> Path:
    torch.save({'weight': torch.ones(3, 3), 'bias': torch.zeros(3)}, path)
    return path


def _damaged_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one-line error says about it)."""
    good = _good(tmp / 'good.pth').read_bytes()
    legacy = tmp / 'legacy.pth'
    torch.save({'w': torch.ones(64, 64)}, legacy, _use_new_zipfile_serialization=False)
    cases = {
        'empty': (b'', 'is empty (0 bytes)'),
        'truncated': (good[:len(good) // 2], 'truncated or damaged'),
        'truncated legacy format': (legacy.read_bytes()[:2000], 'truncated or damaged'),
        'text': (b'epoch 3: loss 0.25\n', 'not a PyTorch checkpoint: it looks like a text file'),
        'image': (b'\x89PNG\r\n\x1a\n' + bytes(64), 'it looks like a PNG image'),
        'web page': (b'<!DOCTYPE html><html>Google Drive - virus scan warning', 'web page'),
    }
    files = {}
    for name, (data, message) in cases.items():
        path = tmp / f"{name.replace(' ', '_')}.pth"
        path.write_bytes(data)
        files[name] = (path, message)
    archive = tmp / 'archive.pth'
    with zipfile.ZipFile(archive, 'w') as z:
        z.writestr('notes.txt', 'not a model')
    files['zip of something else'] = (archive, 'zip archive but not a PyTorch checkpoint')
    torch.save({'model': {'w': torch.ones(3)}, 'args': argparse.Namespace(lr=0.1)}, tmp / 'args.pth')  # old releases
    files['training arguments'] = (tmp / 'args.pth', 'safe loading refuses: argparse.Namespace (a Python object')
    safetensors = tmp / 'cut.safetensors'
    from safetensors.torch import save_file
    save_file({'w': torch.ones(8, 8)}, str(safetensors))
    safetensors.write_bytes(safetensors.read_bytes()[:-16])
    files['truncated safetensors'] = (safetensors, 'truncated or damaged')
    (tmp / 'folder.pth').mkdir()
    files['folder'] = (tmp / 'folder.pth', 'is a folder')
    return files


def test_damaged_and_foreign_files_stop_with_what_is_wrong(tmp_path):
    for name, (path, message) in _damaged_files(tmp_path).items():
        with pytest.raises(CheckpointError) as caught:
            read_checkpoint(path)
        assert message in str(caught.value), name
        assert str(path) in str(caught.value), name
    with pytest.raises(MissingFileError, match='does not exist'):
        read_checkpoint(tmp_path / 'nowhere.pth')


def test_code_in_a_checkpoint_is_refused_and_never_run(tmp_path):
    marker = tmp_path / 'ran'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': RunsCode(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match=r'safe loading refuses: (posix|os|nt)\.system \(a function that runs '
                                              r'code.*may be malicious'):
        load_checkpoint_file(tmp_path / 'evil.pth')
    assert not marker.exists()


def test_programs_print_one_line_and_exit_2(tmp_path, capsys):
    from visionattn.cli.convert_checkpoint import main
    files = _damaged_files(tmp_path)
    for name in ('truncated', 'text'):
        with pytest.raises(SystemExit) as caught:
            main([str(files[name][0]), str(tmp_path / 'out.safetensors'), '--family', 'nat', '--model', 'nat_mini'])
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith('error: ') and files[name][1] in err and err.count('\n') == 1, err
        assert 'Traceback' not in err and 'PytorchStreamReader' not in err


def test_verify_finds_what_a_crash_leaves_without_unpickling(tmp_path):
    path = _good(tmp_path / 'ok.pth')
    verify_checkpoint(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        record = next(i for i in z.infolist() if i.filename.endswith('data/0'))
    name_length, extra_length = (int.from_bytes(data[record.header_offset + i:record.header_offset + i + 2], 'little')
                                 for i in (26, 28))  # of the local file header
    data[record.header_offset + 30 + name_length + extra_length + 8] ^= 0xFF  # one flipped byte inside a tensor
    flipped = tmp_path / 'flipped.pth'
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='fails its checksum'):
        verify_checkpoint(flipped)
    (tmp_path / 'cut.pth').write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match='truncated'):
        verify_checkpoint(tmp_path / 'cut.pth')


def test_strict_loading_reports_counts_keys_and_origin(tmp_path, caplog):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 10, 1), nn.Linear(4, 2))
    state = other.state_dict()
    with pytest.raises(CheckpointError) as caught:
        load_state_dict_checked(model, state, source='other.pth', looks_like=describe_checkpoint(state))
    message = str(caught.value)
    assert message.startswith('other.pth does not fit Sequential: 2 tensors belong to no part of the model (3.weight, '
                              '3.bias); 2 have another shape (2.weight: checkpoint (10, 8, 1, 1), model (4, 8, 1, 1)')
    assert 'looks like a state dict of 11 tensors' in message and 'strict=False' in message
    before = model[2].weight.detach().clone()
    report = load_state_dict_checked(model, state, strict=False, source='other.pth')
    assert 'Loading only the 7 matching tensors' in caplog.text
    torch.testing.assert_close(model[0].weight, other[0].weight)
    torch.testing.assert_close(model[2].weight, before)  # another shape: left as it was
    assert report.matched == 7 and not report.ok


def test_training_checkpoints_are_described_by_their_config():
    meta = dict(experiment_name='upernet_resnet18_ade20k_demo_20261130_202846',
                cfg="model = dict(\n    backbone=dict(model_name='resnet18', type='visionattn.TimmBackbone'),\n"
                    "    decode_head=dict(num_classes=150, type='UPerHead'))\n__import__('os').system('x')")
    description = describe_checkpoint({'meta': meta, 'state_dict': {'w': torch.ones(1)}})
    assert description == ('the training run of config upernet_resnet18_ade20k_demo (timm model resnet18; UPerHead; '
                           '150 classes)')


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / 'weights.pth'
    path.write_bytes(b'old')
    with pytest.raises(RuntimeError, match='disk full'):
        with write_atomically(path) as partial:
            partial.write_bytes(b'half of the new')
            raise RuntimeError('disk full')
    assert path.read_bytes() == b'old' and sorted(p.name for p in tmp_path.iterdir()) == ['weights.pth']
    with write_atomically(path) as partial:
        partial.write_bytes(b'new')
    assert path.read_bytes() == b'new' and sorted(p.name for p in tmp_path.iterdir()) == ['weights.pth']


# ---------------------------------------------------------------------------------------------
# Pretrained weights: in init_weights(), checked, and one message when they cannot be fetched
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hf'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))


def test_backbone_weights_load_in_init_weights_and_are_checked(tmp_path, no_network):
    source = timm.create_model('test_convnext')
    path = tmp_path / 'test_convnext.pth'
    torch.save({'model': source.state_dict()}, path)
    backbone = TimmBackbone('test_convnext', pretrained=str(path))
    assert not torch.equal(backbone.model.stem_0.weight, source.stem[0].weight)  # nothing loaded when built
    backbone.init_weights()
    torch.testing.assert_close(backbone.model.stages_3.blocks[0].conv_dw.weight,
                               source.stages[3].blocks[0].conv_dw.weight)
    TimmBackbone('test_convnext', pretrained=str(tmp_path / 'absent.pth'))  # building never reads the file
    with pytest.raises(MissingFileError, match='absent.pth does not exist; fix model.backbone.pretrained'):
        TimmBackbone('test_convnext', pretrained=str(tmp_path / 'absent.pth')).init_weights()
    partial = {k: v for k, v in source.state_dict().items() if not k.startswith('stages.3.blocks.0.conv_dw')}
    torch.save(dict(partial, **{'extra.weight': torch.ones(2)}), tmp_path / 'partial.pth')
    with pytest.raises(CheckpointError, match=r'partial.pth does not fit test_convnext: 2 of the \d+ model tensors '
                                              r'are missing \(stages.3.blocks.0.conv_dw.weight, '
                                              r'stages.3.blocks.0.conv_dw.bias\); 1 tensors belong to no part of the '
                                              r'model \(extra.weight\).*model.backbone.pretrained_strict=False'):
        TimmBackbone('test_convnext', pretrained=str(tmp_path / 'partial.pth')).init_weights()
    lenient = TimmBackbone('test_convnext', pretrained=str(tmp_path / 'partial.pth'), pretrained_strict=False)
    lenient.init_weights()
    torch.testing.assert_close(lenient.model.stem_0.weight, source.stem[0].weight)
    torch.save(timm.create_model('test_resnet').state_dict(), tmp_path / 'test_resnet.pth')
    with pytest.raises(CheckpointError, match=r"test_resnet.pth does not fit test_convnext: its checkpoint filter "
                                              r"fails on it \(KeyError: 'fc.weight'\).*top-level modules conv1, bn1"):
        TimmBackbone('test_convnext', pretrained=str(tmp_path / 'test_resnet.pth')).init_weights()
    assert not no_network


def test_every_weight_source_fails_with_where_to_get_it_and_how_to_point_at_it(no_network, empty_caches, monkeypatch):
    from huggingface_hub import constants

    from visionattn.mm.classifiers import TimmClassifier
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    cases = [  # (build, what it names)
        (lambda: TimmBackbone('test_convnext', pretrained=True).init_weights(),
         ('https://huggingface.co/timm/test_convnext', 'HF_HUB_OFFLINE=1')),
        (lambda: TimmClassifier('test_convnext', pretrained=True).init_weights(),
         ('https://huggingface.co/timm/test_convnext', 'model.pretrained=PATH')),
        (lambda: timm.create_model('nat_mini', pretrained=True),  # a direct URL, not in the cache
         ('shi-labs.com/projects/nat/checkpoints/CLS/nat_mini.pth', 'HF_HUB_OFFLINE=1')),
        (lambda: timm.create_model('resnet50_cbam', pretrained=True),  # Google Drive
         ('gdown 1mvAVvhLR_2XY_bPYxh-SEz4vDmGzSArO', 'confirmation page')),
        (lambda: timm.create_model('biformer_tiny', pretrained=True),  # OneDrive
         ('biformer_tiny_in1k.pth', '1drv.ms', 'HF_HUB_OFFLINE=1')),
    ]
    for build, names in cases:
        with pytest.raises(WeightsUnavailableError) as caught:
            build()
        message = str(caught.value)
        assert message.startswith('could not fetch the pretrained weights of'), message
        assert all(name in message for name in (*names, *POINTERS)), message
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)  # online, but the connection fails
    with pytest.raises(WeightsUnavailableError, match=r'nat_mini from https://shi-labs.com.*URLError'):
        timm.create_model('nat_mini', pretrained=True)
    assert no_network
