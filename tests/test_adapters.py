"""timm/ and torchaudio/ adapters: local weights, maps, feature dims."""
import os
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

import zoo
from tests.backbone_configs import ADAPTER_ARGS
from zoo.backbones.adapters import offline
from zoo.errors import ZooError


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


@pytest.mark.parametrize("name", list(ADAPTER_ARGS))
def test_wrapped_backbones_say_they_are_padding_sensitive(name):
    backbone = zoo.create_backbone(name, **ADAPTER_ARGS[name])
    assert backbone.padding_sensitive is True and zoo.BACKBONES.meta(name)["padding_sensitive"] is True


def test_padding_changes_a_timm_cnn_so_the_flag_is_needed():
    """Why detection batches a padding-sensitive backbone by size: a 64 x 32 image alone and
    padded to 64 x 64 in a batch give different features on its real cells (once BatchNorm has
    statistics and gains, as in any trained model: zero padding no longer stays zero)."""
    backbone = zoo.create_backbone("timm/resnet18").eval()
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.weight.data.uniform_(0.5, 1.5)   # timm starts the last gain of each block at zero
    image = torch.randn(1, 3, 64, 32)
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[:, :, :32] = True
    with torch.no_grad():
        alone = backbone(image).maps[-1]                                  # (1, C, 2, 1)
        padded = backbone(torch.nn.functional.pad(image, (0, 32)), mask).maps[-1][..., :1]
    assert (alone - padded).abs().max() > 1e-3


def test_a_backbone_that_does_not_say_is_assumed_padding_sensitive():
    @zoo.register_backbone("test_silent_backbone", modality="text")
    def build() -> torch.nn.Module:
        return torch.nn.Linear(2, 2)

    try:
        assert zoo.create_backbone("test_silent_backbone").padding_sensitive is True
    finally:
        zoo.BACKBONES._entries.pop("test_silent_backbone")


def test_pretrained_timm_is_refused_at_once_naming_the_local_file_argument():
    started = time.perf_counter()
    with pytest.raises(ZooError, match="pretrained=True.*never downloads.*checkpoint_path="):
        zoo.create_backbone("timm/resnet18", pretrained=True)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(FileNotFoundError, match="checkpoint_path .*missing.safetensors"):
        zoo.create_backbone("timm/resnet18", checkpoint_path="/nonexistent/missing.safetensors")


def test_wrapped_constructors_cannot_download():
    """Inside ``offline`` a torch.hub URL and a Hugging Face hub file fail at once, without a connection."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    before, started = huggingface_hub.constants.is_offline_mode(), time.perf_counter()
    with offline():
        assert huggingface_hub.constants.is_offline_mode()
        with pytest.raises(ZooError, match="never downloads.*http://192.0.2.1/w.pth"):
            torch.hub.load_state_dict_from_url("http://192.0.2.1/w.pth", model_dir=os.environ["ZOO_DATA"])
        with pytest.raises(LocalEntryNotFoundError):
            huggingface_hub.hf_hub_download("timm/resnet18.a1_in1k", "model.safetensors",
                                            cache_dir=os.environ["ZOO_DATA"])
    assert time.perf_counter() - started < 1.0
    assert huggingface_hub.constants.is_offline_mode() == before
    assert torch.hub.download_url_to_file.__module__ == "torch.hub"                 # both put back
