"""Benchmark the attention operators against their baselines: ``python tools/benchmark_kernels.py --help`` (visionattn.cli.benchmark_kernels)."""
from visionattn.cli.benchmark_kernels import main

if __name__ == '__main__':
    main()
