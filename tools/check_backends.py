"""Check every attention backend against the PyTorch path on a device: ``python tools/check_backends.py --help`` (visionattn.cli.check_backends)."""
from visionattn.cli.check_backends import main

if __name__ == '__main__':
    main()
