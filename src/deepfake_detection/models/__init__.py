"""The model zoo: four CNNs built from shared blocks (see ``zoo.py``)."""

# Models with a pretrained backbone: the ones `finetune` unfreezes. Kept free of TensorFlow
# imports so that the CLI and dvc.yaml checks can read it cheaply.
TRANSFER_MODELS = ("resnet50", "efficientnet_b0", "efficientnet_b0_dual_attention")
MODEL_NAMES = ("resnet50", "efficientnet_b0", "light_se_cnn", "efficientnet_b0_dual_attention")


def final_stage(model: str) -> str:
    """The stage whose saved model is this model's final one."""
    return "finetune" if model in TRANSFER_MODELS else "train"
