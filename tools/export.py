"""Export models to ONNX / torch.export, and trained checkpoints to timm: ``python tools/export.py --help`` (visionattn.cli.export)."""
from visionattn.cli.export import main

if __name__ == '__main__':
    main()
