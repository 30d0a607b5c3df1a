"""Parameters and multiply-adds of timm models (the project's own included), as JSON for the model cards.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on one image, batch 1, eval mode, PyTorch
attention path. FlopCounterMode counts matrix products and convolutions (a multiply-add as two FLOPs);
the project's attention operators are custom ops, whose useful work they register next to their
definitions (``register_flop_formula``): QK^T and AV over each query's neighbourhood window or routed
regions (a map smaller than ``kernel x dilation`` counts with its zero padding, as it runs).
Softmax, bias additions, norms and activations are not counted: the fvcore convention that upstream
papers report as "FLOPs" (which are multiply-adds), so ``macs`` compares with their numbers.

    python tools/measure_complexity.py 'nat_*' 'dinat_*' --out model_cards/measured/nat.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import visionattn  # noqa: F401  (registers the project's models and custom ops)


def measure(model_name: str, size: int, **model_kwargs: Any) -> dict[str, Any]:
    """Parameters and counted FLOPs / multiply-adds of ``model_name`` on a ``size`` x ``size`` image."""
    model = timm.create_model(model_name, pretrained=False, **model_kwargs).eval()
    in_chans = model.pretrained_cfg.get('input_size', (3,))[0]
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode(), visionattn.use_backend('torch'):
        model(torch.randn(1, in_chans, size, size))
    flops = counter.get_total_flops()
    return dict(input_size=[in_chans, size, size], params=sum(p.numel() for p in model.parameters()),
                flops=flops, macs=flops // 2)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('patterns', nargs='+', help="timm model names or patterns, e.g. 'nat_*'")
    parser.add_argument('--size', type=int, default=224, help='input side for every model (default 224)')
    parser.add_argument('--native-size', action=argparse.BooleanOptionalAction, default=True,
                        help="also measure at the pretrained config's input size when it differs")
    parser.add_argument('--out', type=Path, help='write the JSON here (default: print it)')
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    names = sorted({name for pattern in args.patterns for name in timm.list_models(pattern)})
    if not names:
        raise SystemExit(f'no timm model matches {args.patterns} (after `import visionattn`)')
    models: dict[str, Any] = {}
    for name in names:
        sizes = [args.size]
        native = timm.get_pretrained_cfg(name)
        if args.native_size and native is not None and native.input_size[-1] != args.size:
            sizes.append(native.input_size[-1])
        runs = [measure(name, size) for size in sizes]
        models[name] = dict(params=runs[0]['params'],
                            complexity=[{k: r[k] for k in ('input_size', 'macs', 'flops')} for r in runs])
        print(f'{name}: {runs[0]["params"] / 1e6:.2f}M params, '
              + ', '.join(f'{r["macs"] / 1e9:.2f} GMACs at {r["input_size"][-1]}px' for r in runs), file=sys.stderr)
    report = dict(
        command='python tools/measure_complexity.py ' + ' '.join(repr(a) if '*' in a else a for a in (argv or sys.argv[1:])),
        convention=('params: every parameter. flops: torch.utils.flop_counter.FlopCounterMode (a multiply-add is 2 '
                    'FLOPs) over matmuls and convolutions, plus QK^T and AV over the attended keys of the '
                    'attention custom ops; batch 1, eval mode. macs = flops / 2: the convention of upstream "FLOPs" (fvcore).'),
        date=datetime.date.today().isoformat(), torch=torch.__version__, timm=timm.__version__, models=models)
    text = json.dumps(report, indent=2) + '\n'
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)


if __name__ == '__main__':
    main(sys.argv[1:])
