"""The main job: demo data, training, evaluation and pictures: ``python tools/demo.py --help`` (visionattn.cli.demo)."""
from visionattn.cli.demo import main

if __name__ == '__main__':
    main()
