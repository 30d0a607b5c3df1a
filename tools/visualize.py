"""Pictures of what the models attend to and predict: ``python tools/visualize.py --help`` (visionattn.cli.visualize)."""
from visionattn.cli.visualize import main

if __name__ == '__main__':
    main()
