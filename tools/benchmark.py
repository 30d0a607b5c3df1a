"""Whole-model benchmark (images/s, peak memory, FLOPs): ``python tools/benchmark.py --help`` (visionattn.cli.benchmark)."""
from visionattn.cli.benchmark import main

if __name__ == '__main__':
    main()
