"""Write or check the model cards and the README's model tables: ``python tools/model_cards.py --help`` (visionattn.cli.model_cards)."""
from visionattn.cli.model_cards import main

if __name__ == '__main__':
    main()
