"""timm's vit_tiny_patch16_224 (random init) converted into our ViT gives the same logits."""
import timm
import torch

import zoo
from zoo.backbones.convert import timm_vit_to_zoo


def test_timm_vit_tiny_converts_to_same_logits():
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    backbone_state, head_state = timm_vit_to_zoo(reference.state_dict())
    ours = zoo.create_model("vit_tiny", "classification", num_classes=1000, pool="cls").eval()
    ours.backbone.load_state_dict(backbone_state, strict=True)
    ours.head.load_state_dict(head_state, strict=True)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(images)
        got = ours({"inputs": images})["logits"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
