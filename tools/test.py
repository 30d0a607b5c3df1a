"""Evaluate a checkpoint on a config's test set: ``python tools/test.py --help`` (visionattn.cli.test)."""
from visionattn.cli.test import main

if __name__ == '__main__':
    main()
