"""Convert an official checkpoint into timm weights: ``python tools/convert_checkpoint.py --help`` (visionattn.cli.convert_checkpoint)."""
from visionattn.cli.convert_checkpoint import main

if __name__ == '__main__':
    main()
