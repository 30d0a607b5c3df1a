"""Convert CBAM / Triplet ResNet weights for OpenMMLab's ResNet: ``python tools/convert_attention_resnet.py --help`` (visionattn.cli.convert_attention_resnet)."""
from visionattn.cli.convert_attention_resnet import main

if __name__ == '__main__':
    main()
