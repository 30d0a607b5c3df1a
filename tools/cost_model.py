"""Print the tile-level cost model of the attention kernels per model layer: ``python tools/cost_model.py --help`` (visionattn.cli.cost_model)."""
from visionattn.cli.cost_model import main

if __name__ == '__main__':
    main()
