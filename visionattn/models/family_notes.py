"""What the model cards say about each family in words: the prose of ``model_cards/<model>.md``.

Data only, next to the models it describes: one :class:`FamilyNotes` per family (the name of its
``visionattn/models/<family>.py`` module or of its ``model_cards/reported/<family>.json`` file).
Everything numeric on a card comes from the model itself or from the reported/measured JSON files;
the sentences that depend on a model's measured layout are written by the computed facts that
``facts`` names (:data:`visionattn.analysis.model_cards.FACTS`). Cards are rendered by
``python tools/model_cards.py`` (:mod:`visionattn.analysis.model_cards`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ['FamilyNotes', 'FAMILY_NOTES', 'SHARED_DOMAIN_NOTE', 'NO_CLINICAL_USE']


@dataclass(frozen=True)
class FamilyNotes:
    """What a card says about every model of a family."""
    title: str
    paper: str  # markdown; used when the registry metadata names no paper
    summary: str  # what the architecture does
    limits: tuple[str, ...]  # intended use and limits, specific to the mechanism
    domains: tuple[str, ...]  # medical / remote-sensing caveats, specific to the mechanism
    facts: tuple[str, ...] = ()  # computed facts added to the limits (names in visionattn.analysis.model_cards.FACTS)
    # attention layer class name -> (limits, domain caveats) added to the cards of models that have it
    layer_notes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ('limits', 'domains', 'facts'):
            if not isinstance(getattr(self, name), tuple):
                raise TypeError(f'FamilyNotes {self.title!r}: {name} must be a tuple')


SHARED_DOMAIN_NOTE = (
    'Pretrained weights (where they exist) come from ImageNet: natural, upright, 8-bit RGB photographs. '
    'With `in_chans != 3` timm adapts the first layer by repeating the RGB filters cyclically and scaling '
    'them by 3 / in_chans (summing them for one channel): a starting point, not a model of the new bands; '
    'normalise each band with its own statistics, not the ImageNet mean and std.'
)
NO_CLINICAL_USE = ('No model of this project has been validated for clinical use, and none is a medical device: '
                   'outputs are not diagnoses, and any clinical use needs its own validation on the target '
                   'population and scanner.')

FAMILY_NOTES: dict[str, FamilyNotes] = {
    'cnn_attention': FamilyNotes(
        title='Attention-augmented CNNs (CBAM, ELA, Triplet)',
        paper='see the registry metadata of each model',
        summary=(
            'timm\'s ResNet or MobileNetV2 with a light attention module in every block. ResNets carry it on '
            'the residual branch after the last BatchNorm, before the addition. MobileNetV2 carries CBAM and ELA '
            'on the expanded features after the depthwise conv of every expanding block, and Triplet attention '
            'after the projection of every block. CBAM gates channels (a shared MLP on average- and max-pooled '
            'descriptors) and then positions (7x7 conv on the channel mean and max). ELA gates rows and columns '
            'per channel from strip-pooled profiles (one shared 1-D conv, GroupNorm, sigmoid). Triplet '
            'attention averages three gates computed from the (C, W), (H, C) and (H, W) views of the tensor '
            '(Z-pool, k x k conv, BatchNorm, sigmoid).'),
        limits=(
            'Classification backbones, and backbones for detection/segmentation through visionattn.TimmBackbone; '
            'mmdet/mmseg ResNet configs can also take the modules as plug-ins. Any input size runs.',
            'The gates multiply features that the pretrained ResNet/MobileNetV2 never saw gated: adding a module '
            'to an ImageNet ResNet without the matching checkpoint starts from untrained gates.',
            'Cost on CPU is larger than the parameter and MAC counts suggest (many small pooling and gating '
            'ops): see benchmarks/attention_overhead_cpu.md for the latency overhead on ResNet-50.'),
        domains=(),
        layer_notes={
            'CBAM': (
                ('CBAM\'s channel gate comes from globally pooled descriptors: large uniform backgrounds or '
                 'borders change the gate of every position. Its spatial gate holds a BatchNorm: with tiny '
                 'fine-tuning batches keep it in eval mode (norm_eval) or freeze it.',),
                ('Medical images: large empty regions (slide background, air around a body) dominate the global '
                 'channel descriptors; crop to tissue or mask background. Remote sensing: no-data borders enter '
                 'the global average and max.',)),
            'ELA': (
                ('ELA has no released code or weights (hyper-parameters from the paper\'s text, sizes T/B/S/L); '
                 'its GroupNorm needs channels divisible by 32 (ELA-T) or 16 (B, S, L), and by 8 for S and L. '
                 'Its gates average whole rows and columns, so they depend on everything in the row or column.',),
                ('Remote sensing: the row/column profiles are tied to the image axes while aerial scenes have no '
                 'up direction: train with 90-degree rotations and flips.',)),
            'TripletAttention': (
                ('Triplet attention adds almost no parameters (two-channel k x k convs) but three pooled views per '
                 'block. A released checkpoint loads only into the model with its kernel size (the *_k3 models '
                 'for k = 3). Its branch convs are followed by BatchNorm: keep it in eval mode for tiny batches.',),
                ('Remote sensing: the (C, W) and (H, C) branches are tied to the image axes: train with '
                 '90-degree rotations and flips.',)),
        },
    ),
    'halonet': FamilyNotes(
        title='HaloNet',
        paper='Vaswani et al., *Scaling Local Self-Attention for Parameter Efficient Visual Backbones*, CVPR 2021 '
              '([arXiv:2103.12731](https://arxiv.org/abs/2103.12731))',
        summary=(
            'ResNet-like stages of bottleneck blocks whose spatial layer is blocked local self-attention: the map '
            'is cut into non-overlapping b x b query blocks and each block attends to its b x b neighbourhood plus '
            'a halo of h pixels on every side, with relative position embeddings. The H0-H7 models of the paper '
            'are pure attention from the first stage; timm\'s halonet26t/50ts are hybrids with convolutional '
            'early stages.'),
        limits=(
            'Classification, and backbones for detection/segmentation through visionattn.TimmBackbone (which '
            'pads to the needed multiple). No official weights were ever released for H0-H7: those models are '
            'architectures to train (their parameter counts reproduce the paper\'s table); halonet_h1 is timm\'s '
            'own definition. halonet26t and halonet50ts have timm-trained ImageNet weights (not a paper '
            'configuration).',
            'Attention is confined to the fixed block grid: outputs are not translation-equivariant across block '
            'borders, and shifting an image by a non-multiple of the block size changes the features.'),
        domains=(
            'Medical and remote-sensing tiles must be sized to the input multiple or padded; padding adds '
            'zero tokens that take part in attention near the right/bottom border, so tile with overlap and '
            'discard border predictions.',),
        facts=('halo',),
    ),
    'davit': FamilyNotes(
        title='DaViT',
        paper='Ding et al., *DaViT: Dual Attention Vision Transformers*, ECCV 2022 '
              '([arXiv:2204.03645](https://arxiv.org/abs/2204.03645))',
        summary=(
            'timm\'s DaViT: four stages that alternate spatial window attention (7x7-token windows) with channel '
            'group attention, in which channels attend to channels with every token as a feature, so each '
            'channel-attention layer sees the whole image at a cost linear in the number of tokens.'),
        limits=(
            'ImageNet-1k classification (official Microsoft weights, converted by timm and on the Hugging Face '
            'Hub) and backbone for detection/segmentation through visionattn.TimmBackbone with out_norm '
            '(upstream\'s dense-prediction backbones normalise every stage output).',
            'Channel attention mixes statistics of the whole input: on very large inputs every feature depends on '
            'content far away, and results on a tile differ from the same region inside a larger image.'),
        domains=(
            'Remote-sensing scenes and whole-slide tiles much larger than 224 px change the global channel '
            'statistics the pretrained channel attention was trained on: fine-tune at the tile size you will '
            'infer at.',),
        facts=('input_multiple',),
    ),
    'focalnet': FamilyNotes(
        title='FocalNet',
        paper='Yang et al., *Focal Modulation Networks*, NeurIPS 2022 '
              '([arXiv:2203.11926](https://arxiv.org/abs/2203.11926))',
        summary=(
            'timm\'s FocalNet: self-attention replaced by focal modulation. A stack of depthwise convolutions '
            '(focal levels with growing kernels) plus a globally average-pooled level builds context at several '
            'ranges; gates select per token how much of each level modulates a query projection. No attention '
            'matrix is formed; cost is linear in the number of tokens. srf models have 2 focal levels, lrf 3.'),
        limits=(
            'ImageNet-1k classification (official weights on the Hugging Face Hub through timm) and backbone for '
            'detection/segmentation. Upstream\'s detection and segmentation recipes use larger focal kernels '
            '(9/11/13), initialised from the ImageNet kernels by zero-padding: visionattn.TimmBackbone does this '
            'when model_kwargs only grow the kernels.',
            'The last focal level is a global average: image-level statistics (e.g. a large uniform background) '
            'modulate every token.'),
        domains=(
            'Remote sensing: the depthwise focal kernels cover a fixed number of pixels, so the context range in '
            'metres depends on the ground sampling distance; resample to the resolution you fine-tune at. '
            'Medical images: the global-average level mixes in the background of the whole image; crop to the '
            'region of interest.',),
        facts=('input_multiple',),
    ),
    'nat': FamilyNotes(
        title='NAT / DiNAT',
        paper='Hassani et al., *Neighborhood Attention Transformer*, CVPR 2023 '
              '([arXiv:2204.07143](https://arxiv.org/abs/2204.07143)); Hassani & Shi, *Dilated Neighborhood '
              'Attention Transformer* ([arXiv:2209.15001](https://arxiv.org/abs/2209.15001))',
        summary=(
            'Hierarchical transformer whose attention is neighbourhood attention: every token attends to the '
            'k x k tokens around it (the window shifts inward at the borders, so every token has k*k keys), with '
            'relative positional bias. DiNAT alternates plain and dilated neighbourhoods (dilation d spreads the '
            'window over a k*d span) for a larger receptive field at the same cost. Convolutional tokenizer and '
            'downsamplers. The isotropic variants (nat_isotropic_*, dinat_isotropic_*; DiNAT paper) are ViT-like '
            'instead: a 16x16 patch embedding and 12 blocks at stride 16 without downsampling, DiNAT-iso '
            'alternating dilation 1 and 2.'),
        limits=(
            'ImageNet classification and backbone for detection/segmentation (the isotropic variants: ImageNet-1k '
            'classification only upstream, one stride-16 map for features). The official checkpoints were '
            'trained with NATTEN 0.14-0.17 (relative positional bias), which current NATTEN no longer ships; '
            'here they run on the project\'s own operator (Triton on CUDA, PyTorch on CPU) with the same '
            'semantics.',),
        domains=(
            'Remote sensing: the window is fixed in tokens, so its footprint in metres follows the ground '
            'sampling distance; choose the input resolution so that objects span several tokens at stride 4. '
            'Medical images: small crops or patches (below the sizes stated above) pad stages and change the '
            'features; keep patches at least that large.',),
        facts=('neighborhood',),
    ),
    'biformer': FamilyNotes(
        title='BiFormer',
        paper='Zhu et al., *BiFormer: Vision Transformer with Bi-Level Routing Attention*, CVPR 2023 '
              '([arXiv:2303.08810](https://arxiv.org/abs/2303.08810))',
        summary=(
            'Four-stage transformer with bi-level routing attention: the map is split into an n_win x n_win grid '
            'of regions; each region is routed to the top-k regions whose mean key best matches its mean query, '
            'and its tokens attend to the tokens of those k regions, with LePE (a depthwise conv on V). The last '
            'stage uses plain global attention. Every block starts with a 3x3 depthwise-conv position embedding.'),
        limits=(
            'ImageNet-1k classification (official weights on OneDrive, whose direct links have broken before) '
            'and backbone for detection/segmentation (feature_norms=True loads upstream\'s mmdet/mmseg '
            'checkpoints). The routing is content-dependent and not differentiable (top-k indices carry no '
            'gradient, as upstream). Memory here does not grow with top-k (the attention reads routed regions in '
            'place instead of upstream\'s gathered copies).',),
        domains=(
            'Remote sensing: with zero-padded or no-data borders, pad_mode=\'upstream\' lets padded regions win '
            'routing slots; use pad_mode=\'masked\' or cut tiles to the region multiple.',
            'Medical images: routing picks regions by the similarity of their mean query and key, which favours '
            'large homogeneous structures over small lesions when regions are large (coarse n_win).'),
        facts=('routing',),
    ),
}
