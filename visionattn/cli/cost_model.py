"""Print the tile-level cost model of the attention kernels for every attention layer of some models.

    python tools/cost_model.py --models nat_tiny dinat_tiny biformer_small --out benchmarks/cost_model.md

For each distinct attention call of one forward pass at the model's default input size (counts per
image, fp16): the Triton kernels' computed/useful FLOPs and bytes against FlexAttention's block mask
(and, for routing attention, upstream's gather), and issue 17's cost-model targets. What is counted
and how: :mod:`visionattn.analysis.cost_model`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_debug_argument, cli_main
from ..analysis.cost_model import PRUNE_SLACK, layer_table, targets_table

_LEGEND = f"""Counts per image (batch 1, fp16), whole layer (all heads). computed/useful: FLOPs the kernel's dots compute
(every lane, head_dim padded to a power of two >= 16) over the attention's useful FLOPs (4 * heads * queries *
keys per query * head_dim forward, 2.5x that backward); visited/useful: real (query, key) pairs a program walks
over pairs in a window (the tiling's waste without the padding of blocks to powers of two); MB: global-memory
bytes loaded and stored if no cache helps (a key box walked by many tiles is read by each). Triton: the tile
(query block / key chunk, lanes per axis) with the fewest computed FLOPs among the candidates kept by the
pruning (within {PRUNE_SLACK}x of the best in computed FLOPs and in bytes); fwd+bwd: forward, dQ and dK/dV
kernels with each one's best kept tile. Flex 128: FlexAttention with the 'flex' backend's block mask (128-token
blocks on the row-major flattened map). Routing: the Triton kernels (a region's queries in one tile of >= 16
lanes, the routed keys in 64-key chunks) against upstream's gather ('reference': a topk-times copy of K and V,
logits materialised) and FlexAttention with one region per block (regions padded to >= 16 slots)."""


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['nat_tiny', 'dinat_tiny', 'biformer_small'],
                        help='timm model names (after `import visionattn`)')
    parser.add_argument('--out', type=Path, help='also write the tables here (markdown)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    text = (f'Command: python tools/cost_model.py {" ".join(argv)}\n\n{_LEGEND}\n\n'
            f'{layer_table(args.models)}\n\nTargets (issue 17):\n\n{targets_table()}\n')
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == '__main__':
    main()
