"""Train a config (mmpretrain, mmdet or mmseg): ``python tools/train.py --help`` (visionattn.cli.train)."""
from visionattn.cli.train import main

if __name__ == '__main__':
    main()
