"""visionattn.analysis pictures: the maps are what the layers compute, and the figures show them readably."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import REPO_ROOT
from visionattn.analysis.attention_maps import attention_gates, neighborhood_attention, routed_attention
from visionattn.analysis.figures import gates_figure, predictions_figure, query_attention_figure
from visionattn.analysis.loading import LoadedModel, load_model
from visionattn.analysis.predictions import draw_prediction
from visionattn.cli import visualize
from visionattn.errors import ConfigError, UnknownNameError
from visionattn.layers import CBAM, ELA, TripletAttention


def _randomise_norms(model: nn.Module) -> None:
    """Non-trivial normalisation parameters and statistics, so gates and attention are not uniform."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _qkv_of(layer: nn.Module, run) -> torch.Tensor:
    """The output of ``layer.qkv`` during ``run()`` (what the layer attends with)."""
    captured = []
    hook = layer.qkv.register_forward_hook(lambda m, a, out: captured.append(out.detach()))
    try:
        result = run()
    finally:
        hook.remove()
    return captured[0][0], result


# ---------------------------------------------------------------------------------------------
# CBAM / ELA / Triplet gates
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('attention', [CBAM(16, reduction=4), ELA(16, size='B'), TripletAttention(16),
                                       TripletAttention(16, kernel_size=3, no_spatial=True)],
                         ids=['cbam', 'ela', 'triplet', 'triplet_no_spatial'])
def test_gate_is_what_the_module_multiplies_by(attention: nn.Module) -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), attention).eval()
    _randomise_norms(model)
    loaded = LoadedModel(model=model, network=model, title='test')
    image = _image(12, 10)
    inference, gates = attention_gates(loaded, image)
    assert [g.layer for g in gates] == ['1'] and gates[0].kind == type(attention).__name__
    x = (torch.tensor(image).permute(2, 0, 1)[None].float() / 255 - torch.tensor(loaded.mean).view(1, 3, 1, 1)) \
        / torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        features = model[0](x)
        expected = attention(features)
    assert gates[0].values.shape == features.shape[1:] and gates[0].stride == (1, 1)
    torch.testing.assert_close(features[0] * gates[0].values, expected[0])
    assert float(gates[0].values.std()) > 1e-3  # not a constant map
    assert inference.input_size == (12, 10)


def test_gates_of_a_registered_model_and_their_figure(tmp_path) -> None:
    loaded = load_model('resnet18_cbam', model_kwargs=dict(num_classes=0))
    _randomise_norms(loaded.model)
    runs = [attention_gates(loaded, _image(64, 48, seed)) for seed in (0, 1)]
    gates = runs[0][1]
    assert [g.layer for g in gates] == ['layer1.1.se', 'layer2.1.se', 'layer3.1.se', 'layer4.1.se']
    assert [tuple(g.values.shape[1:]) for g in gates] == [(16, 12), (8, 6), (4, 3), (2, 2)]
    assert [g.stride for g in gates] == [(4, 4), (8, 8), (16, 16), (32, 32)]

    figure = gates_figure(runs, 'resnet18_cbam (untrained)')
    figure.savefig(tmp_path / 'gates.png')
    assert Image.open(tmp_path / 'gates.png').size[0] > 5 * 150
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert len(panels) == 2 * 5  # per image: the input and four gates
    assert [ax.get_title().split(' ')[0] for ax in panels[1:5]] == [g.layer for g in gates]
    assert 'CBAM gates' in figure.get_suptitle()
    colour_bars = [ax for ax in figure.axes if ax.get_ylabel() == 'gate G, mean over channels']
    assert len(colour_bars) == 2 * 4
    for bar, gate in zip(colour_bars[:4], gates):  # the colour bar spans the gate's own range
        low, high = bar.get_ylim()
        assert low == pytest.approx(float(gate.channel_mean.min()), abs=1e-5)
        assert high == pytest.approx(float(gate.channel_mean.max()), abs=1e-5)


def test_gates_name_the_modules_when_asked_for_a_wrong_one() -> None:
    loaded = load_model('resnet18_triplet', model_kwargs=dict(num_classes=0))
    with pytest.raises(UnknownNameError, match='layer1.0.se'):
        attention_gates(loaded, _image(32, 32), ['layer1.0.attn'])


# ---------------------------------------------------------------------------------------------
# NAT / DiNAT neighborhood attention
# ---------------------------------------------------------------------------------------------
def natten_window(length: int, kernel: int, dilation: int, index: int) -> list[int]:
    """Positions a query attends to on one axis (NATTEN 0.14-0.17, written from its definition)."""
    group, group_index = index % dilation, index // dilation
    group_length = len(range(group, length, dilation))
    start = min(max(group_index - kernel // 2, 0), group_length - kernel)
    return [(start + t) * dilation + group for t in range(kernel)]


@pytest.fixture(scope='module')
def tiny_dinat() -> LoadedModel:
    loaded = load_model('dinat_mini', model_kwargs=dict(embed_dim=8, depths=(2, 2, 1, 1), num_heads=(2, 2, 2, 2),
                                                        kernel_size=3, dilations=((1, 4), (2, 4), (1,), (1,)),
                                                        num_classes=0))
    _randomise_norms(loaded.model)
    return loaded


@pytest.mark.parametrize('layer, queries, stride, map_side, padded_side, dilation', [
    ('stages.0.blocks.0.attn', [(0, 0), (37, 22)], 4, 16, 16, 1),  # corner: the window shifts inward
    ('stages.0.blocks.1.attn', [(37, 22), (63, 63)], 4, 16, 16, 4),  # dilated: interior and far border
    ('stages.1.blocks.1.attn', [(60, 20)], 8, 8, 12, 4),  # the 8x8 map padded to kernel x dilation = 12
])
def test_neighborhood_attention_is_natten_attention(tiny_dinat, layer, queries, stride, map_side, padded_side,
                                                    dilation) -> None:
    attn = dict(tiny_dinat.network.named_modules())[layer]
    image = _image(64, 64)
    qkv, (inference, maps) = _qkv_of(attn, lambda: neighborhood_attention(tiny_dinat, image, queries, [layer]))
    m, = maps
    assert (m.stride, m.map_size, m.padded_size, m.kernel_size, m.dilation, m.heads) == \
        ((stride, stride), (map_side, map_side), (padded_side, padded_side), 3, dilation, 2)
    q, k, _ = qkv.view(padded_side, padded_side, 3, 2, -1).unbind(2)
    for i, (x, y) in enumerate(queries):
        row, col = y // stride, x // stride
        assert m.queries[i] == (row, col)
        rows, cols = natten_window(padded_side, 3, dilation, row), natten_window(padded_side, 3, dilation, col)
        assert {tuple(key) for key in m.keys(i).tolist()} == {(r, c) for r in rows for c in cols}
        for head in range(2):  # softmax(scale q.k + rpb) over the window, written from the definition
            logits = torch.stack([attn.scale * q[row, col, head] @ k[r, c, head]
                                  + attn.rpb[head, (r - row) // dilation + 2, (c - col) // dilation + 2]
                                  for r in rows for c in cols])
            expected = torch.zeros(padded_side, padded_side)
            expected[torch.tensor(rows).repeat_interleave(3), torch.tensor(cols).repeat(3)] = logits.softmax(0)
            torch.testing.assert_close(m.weights[i, head], expected, atol=1e-5, rtol=1e-4)


def test_neighborhood_defaults_and_a_query_outside_the_image(tiny_dinat) -> None:
    _, maps = neighborhood_attention(tiny_dinat, _image(64, 64), [(10, 10)])
    assert [(m.layer, m.dilation) for m in maps] == [  # the first layer of every stage and dilation
        ('stages.0.blocks.0.attn', 1), ('stages.0.blocks.1.attn', 4), ('stages.1.blocks.0.attn', 2),
        ('stages.1.blocks.1.attn', 4), ('stages.2.blocks.0.attn', 1), ('stages.3.blocks.0.attn', 1)]
    with pytest.raises(ConfigError, match='outside the 64x64 image'):
        neighborhood_attention(tiny_dinat, _image(64, 64), [(64, 3)])


def test_neighborhood_figure_per_head_marks_the_window_and_the_padding(tiny_dinat, tmp_path) -> None:
    inference, maps = neighborhood_attention(tiny_dinat, _image(64, 64), [(60, 20), (5, 5)],
                                             ['stages.1.blocks.1.attn'])
    figure = query_attention_figure(inference, maps, 'tiny DiNAT', per_head=True)
    figure.savefig(tmp_path / 'nat.png')
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert len(panels) == 2 * 2  # rows: the layer x two queries; columns: two heads
    assert 'head 2 of 2' in panels[1].get_title() and 'dilation 4' in panels[0].get_title()
    assert {t.get_text() for t in figure.legends[0].get_texts()} == {
        'query pixel (numbered)', 'keys of the window', "the layer's zero padding"}
    heat = panels[0].get_images()[1].get_array()  # RGBA: transparent exactly where the query does not attend
    assert heat.shape[:2] == (12, 12)
    np.testing.assert_array_equal(heat[..., 3] > 0, maps[0].weights[0, 0].numpy() > 0)


# ---------------------------------------------------------------------------------------------
# BiFormer routing
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_biformer() -> LoadedModel:
    loaded = load_model('biformer_tiny', model_kwargs=dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128),
                                                           head_dim=16, n_win=4, topks=(2, 3, 4, -2), num_classes=0))
    _randomise_norms(loaded.model)
    return loaded


def _region_means(x: torch.Tensor, n_win: int) -> torch.Tensor:
    height, width = x.shape[:2]
    return x.reshape(n_win, height // n_win, n_win, width // n_win, -1).mean((1, 3)).reshape(n_win * n_win, -1)


@pytest.mark.parametrize('side, layer, queries', [(64, 'stages.0.blocks.0.attn', [(5, 60), (40, 3)]),
                                                  (72, 'stages.1.blocks.0.attn', [(50, 10)])])
def test_routed_attention_is_the_layers_routing_and_attention(tiny_biformer, side, layer, queries) -> None:
    attn = dict(tiny_biformer.network.named_modules())[layer]
    image = _image(side, side)
    qkv, (inference, maps) = _qkv_of(attn, lambda: routed_attention(tiny_biformer, image, queries, [layer]))
    m, = maps
    stride = 4 if layer.startswith('stages.0') else 8
    padded = -(-side // stride // 4) * 4  # the map, padded to a multiple of n_win = 4
    assert (m.stride, m.padded_size, m.grid, m.topk) == ((stride, stride), (padded, padded), (4, 4), attn.topk)
    q, k = qkv[..., :attn.qk_dim], qkv[..., attn.qk_dim:2 * attn.qk_dim]
    affinity = (_region_means(q, 4) * attn.scale) @ _region_means(k, 4).T  # BiFormer's routing, by definition
    region = padded // 4
    for i, (x, y) in enumerate(queries):
        row, col = y // stride, x // stride
        assert m.queries[i] == (row, col) and m.query_regions[i] == (row // region) * 4 + col // region
        routed = affinity[m.query_regions[i]].topk(attn.topk).indices.tolist()
        assert list(m.routed[i]) == routed
        keys = [(r // 4 * region + a, r % 4 * region + b) for r in routed for a in range(region) for b in range(region)]
        for head in range(attn.num_heads):
            heads = slice(head * 16, (head + 1) * 16)
            logits = torch.stack([attn.scale * q[row, col, heads] @ k[kr, kc, heads] for kr, kc in keys])
            expected = torch.zeros(padded, padded)
            expected[[kr for kr, _ in keys], [kc for _, kc in keys]] = logits.softmax(0)
            torch.testing.assert_close(m.weights[i, head], expected, atol=1e-5, rtol=1e-4)


def test_routing_figure_shows_the_routed_regions(tiny_biformer, tmp_path) -> None:
    inference, maps = routed_attention(tiny_biformer, _image(64, 64), [(5, 60), (40, 3)])
    assert [m.layer for m in maps] == ['stages.0.blocks.0.attn', 'stages.1.blocks.0.attn', 'stages.2.blocks.0.attn']
    figure = query_attention_figure(inference, maps, 'tiny BiFormer')
    figure.savefig(tmp_path / 'routing.png')
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert len(panels) == 3 * 2
    assert 'stages.1.blocks.0.attn' in panels[2].get_title() and 'query 2 at (40, 3)' in panels[3].get_title()
    assert 'top-k routed regions' in figure.get_suptitle()
    labels = {t.get_text() for t in figure.legends[0].get_texts()}
    assert labels == {'query pixel (numbered)', "query's region", 'routed region (number = rank)'}  # no padding here
    m = maps[1]
    rank_labels = [t.get_text() for t in panels[3].texts]
    assert rank_labels[:m.topk] == [str(r) for r in range(1, m.topk + 1)]
    heat = panels[3].get_images()[1].get_array()
    np.testing.assert_array_equal(heat[..., 3] > 0, m.weights[1].mean(0).numpy() > 0)


# ---------------------------------------------------------------------------------------------
# Predictions of OpenMMLab models, and the program on a trained checkpoint
# ---------------------------------------------------------------------------------------------
def _checkpoint(config: str, scope: str, path, cfg_options: dict, dataset_meta: dict) -> str:
    """A checkpoint as tools/train.py's Runner saves it: weights, meta and the message hub's log buffers."""
    from mmengine.logging import MessageHub
    from mmengine.registry import init_default_scope

    from visionattn.mm.config import load_config
    cfg = load_config(config, cfg_options)
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.model)
    model.init_weights()
    _randomise_norms(model)
    hub = MessageHub.get_instance(f'visualize-test-{path.name}')
    hub.update_scalar('train/loss', np.float64(0.5))
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': dataset_meta},
                'message_hub': hub.state_dict()}, path)
    return str(path)


@pytest.fixture
def scene(tmp_path) -> tuple[str, np.ndarray]:
    image = np.full((72, 96, 3), 128, np.uint8)
    image[20:50, 30:70] = (40, 90, 200)
    path = tmp_path / 'image.png'
    Image.fromarray(image).save(path)
    return str(path), image


@pytest.mark.slow
def test_segmentation_prediction_and_the_programs_on_a_trained_checkpoint(tmp_path, scene, capsys) -> None:
    config = str(REPO_ROOT / 'configs/demo/biformer_tiny_ade20k_demo.py')
    palette = [[(7 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(150)]
    checkpoint = _checkpoint(config, 'mmseg', tmp_path / 'seg.pth', {},
                             dict(classes=[f'class{i}' for i in range(150)], palette=palette))
    loaded = load_model(config, checkpoint)
    prediction = draw_prediction(loaded, scene[1], opacity=1.0)
    classes = prediction.sample.pred_sem_seg.data[0].numpy()
    assert classes.shape == scene[1].shape[:2]
    np.testing.assert_array_equal(prediction.drawn, np.asarray(palette)[classes])
    assert prediction.legend == [(f'class{i}', tuple(palette[i])) for i in np.unique(classes)]

    figure = predictions_figure([('image.png', scene[1], prediction.drawn)], prediction.legend, 'demo', 'Segmentation.')
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [name for name, _ in prediction.legend]

    # the programs: routing of the checkpoint's backbone (the test pipeline resizes 96x72 to 128x96)
    out = tmp_path / 'routing.png'
    visualize.main(['routing', config, '--checkpoint', checkpoint, '--image', scene[0], '--query', '48', '36',
                    '--out', str(out)])
    printed = capsys.readouterr().out
    assert 'model.stages.0.blocks.0.attn: 4x4 regions, top-1: query 1' in printed and out.is_file()
    visualize.main(['predictions', config, checkpoint, scene[0], '--out', str(tmp_path / 'seg.png')])
    assert (tmp_path / 'seg.png').is_file()


def test_binary_segmentation_prediction_has_a_legend(tmp_path, scene) -> None:
    """A binary head (one output channel, thresholded) predicts its classes as 0.0 / 1.0, not as class ids."""
    config = str(REPO_ROOT / 'configs/medical/upernet_convnext_tiny_kvasir_seg.py')
    options = {'model.backbone.model_name': 'resnet10t', 'model.backbone.pretrained': False,
               'model.decode_head.in_channels': [64, 128, 256, 512], 'model.decode_head.channels': 16,
               'model.auxiliary_head.in_channels': 256, 'model.auxiliary_head.channels': 8}
    palette = [[0, 0, 0], [250, 40, 40]]
    checkpoint = _checkpoint(config, 'mmseg', tmp_path / 'binary.pth', options,
                             dict(classes=['background', 'polyp'], palette=palette))
    loaded = load_model(config, checkpoint, cfg_options=options)
    prediction = draw_prediction(loaded, scene[1])
    assert prediction.sample.pred_sem_seg.data.is_floating_point()
    present = prediction.sample.pred_sem_seg.data.unique().long().tolist()
    assert prediction.legend == [(['background', 'polyp'][i], tuple(palette[i])) for i in present]


@pytest.mark.slow
def test_detection_prediction_picture(tmp_path, scene) -> None:
    config = str(REPO_ROOT / 'configs/demo/mask_rcnn_resnet18_coco_demo.py')
    options = {'model.backbone.model_name': 'resnet10t', 'model.test_cfg.rpn.nms_pre': 200,
               'model.test_cfg.rpn.max_per_img': 50, 'model.test_cfg.rcnn.score_thr': 0.0,
               'model.test_cfg.rcnn.max_per_img': 5}
    checkpoint = _checkpoint(config, 'mmdet', tmp_path / 'det.pth', options,
                             dict(classes=[f'class{i}' for i in range(80)]))
    loaded = load_model(config, checkpoint, cfg_options=options)
    image = scene[1]
    everything = draw_prediction(loaded, image, score_thr=-1)
    scores = everything.sample.pred_instances.scores.sort(descending=True).values
    assert len(scores) >= 2 and scores[0] > scores[1]
    best = draw_prediction(loaded, image, score_thr=float(scores[1]) + 1e-6)  # only the best-scoring instance
    instances = best.sample.pred_instances
    top = int(instances.scores.argmax())
    assert [name for name, _ in best.legend] == [f'class{int(instances.labels[top])}']
    x1, y1, x2, y2 = (int(round(float(v))) for v in instances.bboxes[top])
    changed = np.abs(best.drawn.astype(int) - image.astype(int)).sum(-1) > 30
    height, width = changed.shape
    left_edge = changed[max(y1 + 4, 0):min(y2 - 3, height), min(max(x1, 0), width - 1)]
    assert left_edge.size and left_edge.mean() > 0.8
    outside = np.ones_like(changed)
    outside[max(y1 - 8, 0):y2 + 9, max(x1 - 8, 0):x2 + 9] = False
    outside[max(y1 - 8, 0):y1 + 30, max(x1 - 8, 0):x1 + 120] = False  # the label
    assert changed[outside].mean() < 0.02


def test_the_old_subcommand_spelling_still_works(tmp_path, capsys) -> None:
    out = tmp_path / 'window.png'
    visualize.main(['neighbourhood', 'nat_mini', '--model-kwargs',
                    '{"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "kernel_size": 3, '
                    '"num_classes": 0}', '--size', '32', '32', '--layer', 'stages.0.blocks.0.attn', '--query', '5', '5',
                    '--out', str(out)])
    captured = capsys.readouterr()
    assert "'visualize.py neighbourhood' is deprecated, use 'visualize.py neighborhood'" in captured.err
    assert '--layer is deprecated' in captured.err
    assert 'stages.0.blocks.0.attn: kernel 3, dilation 1, 8x8 tokens' in captured.out and out.is_file()


def test_an_unknown_model_is_one_line_and_exit_status_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        visualize.main(['routing', 'biformer_tinny', '--out', str(tmp_path / 'x.png')])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: 'biformer_tinny' is neither a config file")
