"""Overhead of CBAM, ELA and Triplet attention on ResNet-50: ``python tools/measure_attention_overhead.py --help`` (visionattn.cli.measure_attention_overhead)."""
from visionattn.cli.measure_attention_overhead import main

if __name__ == '__main__':
    main()
