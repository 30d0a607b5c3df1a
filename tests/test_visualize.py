"""tools/visualize.py: the pictures show what the models compute (checked pixel by pixel)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / 'tools'))
import visualize  # noqa: E402

from visionattn.layers import CBAM, ELA, TripletAttention  # noqa: E402


def _blend(base: np.ndarray, colour) -> np.ndarray:
    return np.rint((1 - visualize.BLEND) * base.astype(np.float64) + visualize.BLEND * np.asarray(colour))


def _randomise_norms(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so the gates are not constant."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias)
            m.running_mean.normal_()


# ---------------------------------------------------------------------------------------------
# CBAM / ELA / Triplet gates
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('attention', [CBAM(16, reduction=4), ELA(16, size='B'), TripletAttention(16),
                                       TripletAttention(16, kernel_size=3, no_spatial=True)],
                         ids=['cbam', 'ela', 'triplet', 'triplet_no_spatial'])
def test_gate_is_what_the_module_multiplies_by(attention: nn.Module) -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), attention).eval()
    _randomise_norms(model)
    x = torch.randn(2, 3, 12, 10)
    gates = visualize.attention_gates(model, x)
    assert list(gates) == ['1']
    gate = gates['1']
    with torch.no_grad():
        features = model[0](x)
        expected = attention(features)
    assert gate.shape == features.shape
    torch.testing.assert_close(features * gate, expected)
    assert float(gate.std()) > 1e-3  # not a constant map


def test_gates_of_a_registered_model_and_their_picture(tmp_path) -> None:
    model = timm.create_model('resnet18_cbam', num_classes=0).eval()
    _randomise_norms(model)
    image = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    gates = visualize.deepest_per_map_size(visualize.attention_gates(model, visualize.to_tensor(model, image)))
    assert list(gates) == ['layer1.1.se', 'layer2.1.se', 'layer3.1.se', 'layer4.1.se']
    assert [tuple(g.shape[-2:]) for g in gates.values()] == [(16, 12), (8, 6), (4, 3), (2, 2)]

    path = tmp_path / 'gates.png'
    visualize.draw_gates(image, gates).save(path)
    sheet = np.asarray(Image.open(path).convert('RGB'))
    assert sheet.shape[1] == 5 * 48 and sheet.shape[0] > 64
    np.testing.assert_array_equal(sheet[:64, :48], image)
    from matplotlib import colormaps
    hottest, coldest = (np.asarray(colormaps['inferno'](v)[:3]) * 255 for v in (1.0, 0.0))
    for panel, gate in enumerate(gates.values(), start=1):
        mean = gate[0].mean(0)
        cell_h, cell_w = 64 // mean.shape[0], 48 // mean.shape[1]
        for index, colour in ((mean.argmax(), hottest), (mean.argmin(), coldest)):
            row, col = divmod(int(index), mean.shape[1])
            y, x = row * cell_h + cell_h // 2, col * cell_w + cell_w // 2
            np.testing.assert_allclose(sheet[y, panel * 48 + x], _blend(image[y, x], colour), atol=1)


def test_gates_name_the_modules_when_asked_for_a_wrong_one() -> None:
    model = timm.create_model('resnet18_triplet', num_classes=0).eval()
    with pytest.raises(KeyError, match='layer1.0.se'):
        visualize.attention_gates(model, torch.zeros(1, 3, 32, 32), ['layer1.0.attn'])


# ---------------------------------------------------------------------------------------------
# NAT / DiNAT neighbourhood windows
# ---------------------------------------------------------------------------------------------
def natten_window(length: int, kernel: int, dilation: int, index: int) -> list[int]:
    """Positions a query attends to on one axis (NATTEN 0.14-0.17, written from its definition)."""
    group, group_index = index % dilation, index // dilation
    group_length = len(range(group, length, dilation))
    start = min(max(group_index - kernel // 2, 0), group_length - kernel)
    return [(start + t) * dilation + group for t in range(kernel)]


@pytest.fixture(scope='module')
def tiny_dinat() -> nn.Module:
    return timm.create_model('dinat_mini', embed_dim=8, depths=(2, 2, 1, 1), num_heads=(1, 1, 1, 1),
                             kernel_size=3, dilations=((1, 4), (2, 4), (1,), (1,)), num_classes=0).eval()


@pytest.mark.parametrize('layer, query_xy, stride, map_side, dilation', [
    ('stages.0.blocks.0.attn', (0, 0), 4, 16, 1),        # corner: the window shifts inward
    ('stages.0.blocks.1.attn', (37, 22), 4, 16, 4),      # dilated, interior
    ('stages.0.blocks.1.attn', (63, 63), 4, 16, 4),      # dilated, far border
    ('stages.1.blocks.0.attn', (30, 9), 8, 8, 2),
    ('stages.1.blocks.1.attn', (60, 20), 8, 12, 4),      # 8x8 map padded to kernel x dilation = 12
])
def test_neighbourhood_window_follows_natten(tiny_dinat, tmp_path, layer, query_xy, stride, map_side,
                                             dilation) -> None:
    window = visualize.neighbourhood_window(tiny_dinat, (64, 64), query_xy, layer)
    assert (window.stride, window.map_size, window.kernel_size, window.dilation) == \
        (stride, (map_side, map_side), 3, dilation)
    row, col = query_xy[1] // stride, query_xy[0] // stride
    assert window.query == (row, col)
    expected = {(r, c) for r in natten_window(map_side, 3, dilation, row)
                for c in natten_window(map_side, 3, dilation, col)}
    assert set(window.keys) == expected and len(window.keys) == 9

    path = tmp_path / 'window.png'
    visualize.draw_window(window).save(path)
    picture = np.asarray(Image.open(path).convert('RGB')).astype(np.float64)
    cell = picture.shape[0] // map_side
    assert picture.shape[:2] == (map_side * cell, map_side * cell) and cell >= 12
    grey = np.full(3, 128)
    for r in range(map_side):
        for c in range(map_side):
            centre = picture[r * cell + cell // 2, c * cell + cell // 2]
            colour = visualize.QUERY_COLOUR if (r, c) == (row, col) else \
                visualize.WINDOW_COLOUR if (r, c) in expected else None
            np.testing.assert_allclose(centre, grey if colour is None else _blend(grey, colour), atol=1)


def test_neighbourhood_window_rejects_a_query_outside_the_image(tiny_dinat) -> None:
    with pytest.raises(ValueError, match='outside the 64x64 image'):
        visualize.neighbourhood_window(tiny_dinat, (64, 64), (64, 3))


# ---------------------------------------------------------------------------------------------
# Predictions of OpenMMLab models (random weights: the picture must show exactly what was predicted)
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
    hub = MessageHub.get_instance(f'visualize-test-{path.name}')
    hub.update_scalar('train/loss', np.float64(0.5))
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': dataset_meta},
                'message_hub': hub.state_dict()}, path)
    return str(path)


@pytest.fixture
def grey_image(tmp_path) -> tuple[str, np.ndarray]:
    image = np.full((72, 96, 3), 128, np.uint8)
    image[20:50, 30:70] = (40, 90, 200)
    path = tmp_path / 'image.png'
    Image.fromarray(image).save(path)
    return str(path), image


@pytest.mark.slow
def test_segmentation_prediction_picture(tmp_path, grey_image) -> None:
    config = str(REPO_ROOT / 'configs/demo/upernet_resnet18_ade20k_demo.py')
    options = {'model.backbone.model_name': 'resnet10t'}
    palette = [[(7 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(150)]
    checkpoint = _checkpoint(config, 'mmseg', tmp_path / 'seg.pth', options,
                             dict(classes=[f'class{i}' for i in range(150)], palette=palette))
    out = tmp_path / 'seg.png'
    result = visualize.draw_predictions(config, checkpoint, grey_image[0], str(out), opacity=1.0, with_labels=False,
                                        cfg_options=options)
    prediction = result.pred_sem_seg.data[0].numpy()
    picture = np.asarray(Image.open(out).convert('RGB'))
    assert prediction.shape == picture.shape[:2] == grey_image[1].shape[:2]
    np.testing.assert_array_equal(picture, np.asarray(palette)[prediction])


@pytest.mark.slow
def test_detection_prediction_picture(tmp_path, grey_image) -> None:
    config = str(REPO_ROOT / 'configs/demo/mask_rcnn_resnet18_coco_demo.py')
    options = {'model.backbone.model_name': 'resnet10t', 'model.test_cfg.rpn.nms_pre': 200,
               'model.test_cfg.rpn.max_per_img': 50, 'model.test_cfg.rcnn.score_thr': 0.0,
               'model.test_cfg.rcnn.max_per_img': 5}
    checkpoint = _checkpoint(config, 'mmdet', tmp_path / 'det.pth', options,
                             dict(classes=[f'class{i}' for i in range(80)]))
    path, image = grey_image
    everything = visualize.draw_predictions(config, checkpoint, path, str(tmp_path / 'all.png'), score_thr=-1,
                                            cfg_options=options)
    scores = everything.pred_instances.scores.sort(descending=True).values
    assert len(scores) >= 2 and scores[0] > scores[1]
    out = tmp_path / 'top.png'
    result = visualize.draw_predictions(config, checkpoint, path, str(out), score_thr=float(scores[1]),
                                        cfg_options=options)  # draws only the best-scoring instance
    top = int(result.pred_instances.scores.argmax())
    x1, y1, x2, y2 = (int(round(float(v))) for v in result.pred_instances.bboxes[top])
    picture = np.asarray(Image.open(out).convert('RGB'))
    changed = np.abs(picture.astype(int) - image.astype(int)).sum(-1) > 30
    height, width = changed.shape
    left_edge = changed[max(y1 + 4, 0):min(y2 - 3, height), min(max(x1, 0), width - 1)]
    assert left_edge.size and left_edge.mean() > 0.8
    outside = np.ones_like(changed)
    outside[max(y1 - 8, 0):y2 + 9, max(x1 - 8, 0):x2 + 9] = False
    outside[max(y1 - 8, 0):y1 + 30, max(x1 - 8, 0):x1 + 120] = False  # the label
    assert changed[outside].mean() < 0.02


# ---------------------------------------------------------------------------------------------
# BiFormer routed regions
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_biformer() -> nn.Module:
    model = timm.create_model('biformer_tiny', depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), head_dim=16,
                              n_win=4, topks=(2, 3, 4, -2), num_classes=0).eval()
    _randomise_norms(model)
    return model


def routing_affinity(layer: nn.Module, qkv: torch.Tensor, n_win: int) -> torch.Tensor:
    """BiFormer's region affinity from its definition: region means of q and k, scaled dot products."""
    q, k = qkv[0, ..., :layer.qk_dim], qkv[0, ..., layer.qk_dim:2 * layer.qk_dim]
    height, width = q.shape[:2]

    def region_means(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(n_win, height // n_win, n_win, width // n_win, -1)
        return x.mean((1, 3)).reshape(n_win * n_win, -1)

    return (region_means(q) * layer.scale) @ region_means(k).T


@pytest.mark.parametrize('side, layer, query_xy', [(64, 'stages.0.blocks.0.attn', (5, 60)),
                                                   (72, 'stages.1.blocks.0.attn', (50, 10))])
def test_routed_regions_are_the_layers_routing(tiny_biformer, tmp_path, side, layer, query_xy) -> None:
    image = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    attn = dict(tiny_biformer.named_modules())[layer]
    captured = {}
    hook = attn.qkv.register_forward_hook(lambda m, a, out: captured.setdefault('qkv', out.detach()))
    try:
        routing = visualize.routed_regions(tiny_biformer, image, query_xy, layer)
    finally:
        hook.remove()
    stride = 4 if layer.startswith('stages.0') else 8
    padded = -(-side // stride // 4) * 4  # the map, padded to a multiple of n_win = 4
    assert (routing.stride, routing.map_size, routing.grid) == (stride, (padded, padded), (4, 4))
    assert captured['qkv'].shape[1:3] == (padded, padded)
    row, col = query_xy[1] // stride, query_xy[0] // stride
    region = padded // 4
    assert routing.query == (row, col) and routing.query_region == (row // region) * 4 + col // region
    affinity = routing_affinity(attn, captured['qkv'], 4)
    expected = affinity[routing.query_region].topk(attn.topk).indices.tolist()
    assert routing.regions == expected and len(expected) == attn.topk

    path = tmp_path / 'routing.png'
    visualize.draw_routing(routing, image).save(path)
    picture = np.asarray(Image.open(path).convert('RGB')).astype(np.float64)
    cell = picture.shape[0] // 4
    zoom = cell // (region * stride)
    assert picture.shape[:2] == (4 * cell, 4 * cell) and cell >= 48
    zoomed = np.zeros((4 * cell, 4 * cell, 3))
    zoomed[:side * zoom, :side * zoom] = image.repeat(zoom, 0).repeat(zoom, 1)
    for r in range(16):
        if r == routing.query_region:
            continue
        y, x = (r // 4) * cell + 3 * cell // 4, (r % 4) * cell + 3 * cell // 4  # away from rank text and lines
        base = zoomed[y, x]
        np.testing.assert_allclose(picture[y, x], _blend(base, visualize.ROUTED_COLOUR) if r in expected else base,
                                   atol=1)
