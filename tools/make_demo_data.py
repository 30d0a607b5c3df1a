"""Write synthetic stand-ins of the public datasets: ``python tools/make_demo_data.py --help`` (visionattn.cli.make_demo_data)."""
from visionattn.cli.make_demo_data import main

if __name__ == '__main__':
    main()
