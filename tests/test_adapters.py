"""timm/ and torchaudio/ adapters: local weights, maps, feature dims."""
import timm
import torch
from safetensors.torch import save_file

import zoo


def test_timm_backbone_loads_a_local_weights_file(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    backbone = zoo.create_backbone("timm/resnet18", checkpoint_path=str(path)).eval()
    torch.testing.assert_close(backbone.body.conv1.weight, source.conv1.weight)
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in features.maps] == backbone.body.feature_info.channels()
    assert features.tokens.shape == (1, 2 * 2, backbone.dim)


def test_timm_backbone_token_mask_follows_pixel_mask():
    backbone = zoo.create_backbone("timm/resnet18").eval()
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[:, :, :32] = True  # left half real
    features = backbone(torch.randn(1, 3, 64, 64), mask)
    assert features.mask.shape == (1, 4) and features.mask.tolist() == [[True, False, True, False]]
