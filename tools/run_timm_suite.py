"""Run timm's own tests/test_models.py on the project's models: ``python tools/run_timm_suite.py --help`` (visionattn.cli.run_timm_suite)."""
from visionattn.cli.run_timm_suite import main

if __name__ == '__main__':
    main()
