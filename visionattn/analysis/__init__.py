"""What the analysis programs compute: attention maps and their figures, measurements, model cards.

The programs (``tools/visualize.py``, ``benchmark.py``, ``benchmark_kernels.py``, ``model_cards.py``,
``measure_attention_overhead.py``; :mod:`visionattn.cli`) only parse arguments and print; everything
they compute is here, importable on its own:

- :mod:`.loading`: a model for pictures, from a timm name or an OpenMMLab config and a trained
  checkpoint, and one inference on an image;
- :mod:`.attention_maps`: BiFormer's routed regions, NAT/DiNAT neighborhoods (attention weights of
  chosen queries, per head) and CBAM/ELA/Triplet gates, read from a forward pass of the real model;
- :mod:`.figures`: figures of those maps and of predictions (titles, legends, colour bars);
- :mod:`.predictions`: segmentation and detection results drawn by OpenMMLab's visualizers;
- :mod:`.profiling`: time, peak tensor memory, FLOPs, the project operators a model calls, the machine;
- :mod:`.model_benchmark`: one whole-model benchmark row per process;
- :mod:`.kernel_suites`: benchmark suites of the attention operators against their baselines;
- :mod:`.attention_overhead`: the cost of CBAM, ELA and Triplet attention on ResNet-50;
- :mod:`.architecture` and :mod:`.model_cards`: the layout of a model and the generated model cards.

Submodules are imported on use (``from visionattn.analysis.figures import ...``): importing this
package loads none of them.
"""
