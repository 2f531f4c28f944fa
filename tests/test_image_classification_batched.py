"""The batched training pipeline equals the per-image one where both are deterministic (whole-image crops,
flips, upscaling), draws crop boxes as torchvision does, and the collate takes it only when it applies."""
import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tasks.image_classification import task as task_module
from tasks.image_classification.batched import (
    batched_train_transform,
    crop_boxes,
    resized_crops,
)
from tasks.image_classification.transforms import (
    build_transform,
    default_transform_config,
)


def _pictures(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def _config(size: int, **fields) -> dict:
    return {**default_transform_config(size, [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]), "augment": "none",
            "scale": [1.0, 1.0], **fields}


@pytest.mark.parametrize("fields", [{"hflip": 0.0}, {"hflip": 1.0}, {"hflip": 0.0, "grayscale_source": True}])
@pytest.mark.parametrize("source, size", [(8, 8), (8, 16)])
def test_whole_image_crops_equal_the_per_image_pipeline(fields, source, size):
    config = _config(size, **fields)
    pictures = _pictures(5, source)
    per_image = build_transform(config, train=True)
    expected = torch.stack([per_image(picture) for picture in pictures])  # (5, 3, S, S)
    # torchvision resizes uint8 pixels (rounded to a level), the batched path floats: at most one level apart
    level = 0.0 if source == size else 1.0 / 255 / min(config["std"])
    torch.testing.assert_close(batched_train_transform(config)(pictures), expected, atol=level + 1e-5, rtol=0)


def test_a_box_is_cut_out_exactly_and_mirrored_when_flipped():
    images = torch.rand(2, 3, 16, 16)
    boxes = torch.tensor([[4, 2, 8, 8], [0, 8, 8, 8]])
    out = resized_crops(images, boxes, torch.tensor([False, True]), 8)  # (2, 3, 8, 8)
    torch.testing.assert_close(out[0], images[0, :, 4:12, 2:10])
    torch.testing.assert_close(out[1], images[1, :, 0:8, 8:16].flip(-1))


def test_crop_boxes_follow_scale_and_ratio_inside_the_image():
    torch.manual_seed(0)
    boxes = crop_boxes(4000, 32, 32, (0.3, 0.8), (3 / 4, 4 / 3))
    top, left, h, w = boxes.T.float()
    assert bool(((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 32)).all())
    area = h * w / 1024
    assert area.min() > 0.25 and area.max() < 0.86    # rounding to whole pixels widens the range a little
    assert (w / h).min() > 0.7 and (w / h).max() < 1.43
    assert 0.5 < area.mean() < 0.6                      # uniform area fraction, clipped by the fits
    assert top.float().std() > 2 and left.float().std() > 2


def test_crop_boxes_fall_back_to_the_centred_whole_image():
    boxes = crop_boxes(50, 8, 10, (1.0, 1.0), (0.5, 0.6))   # no box of the whole area has that ratio
    assert boxes.tolist() == [[0, 2, 8, 5]] * 50             # w / h = 1.25 > 0.6: full height, w = round(8 * 0.6)


def test_a_per_image_policy_keeps_the_per_image_pipeline():
    assert batched_train_transform(_config(8, augment="trivial")) is None
    assert batched_train_transform(_config(8, augment="rand")) is None


def test_the_collate_batches_same_size_pictures_and_falls_back_on_mixed_sizes(monkeypatch):
    calls = []

    def spy(config):
        batched = batched_train_transform(config)
        return lambda pictures: calls.append(len(pictures)) or batched(pictures)

    monkeypatch.setattr(task_module, "batched_train_transform", spy)
    backbone = zoo.create_backbone("vit_tiny", img_size=8, patch_size=4, dim=16, depth=1, heads=2)
    model = zoo.ZooModel(backbone, zoo.create_head("classification", backbone, num_classes=2, labels=["a", "b"]))
    model.preprocessing = {"transform": _config(8, hflip=0.0)}
    collate = task_module.ImageClassificationTask().make_collate(model, train=True)
    same = [{"image": picture, "label": i % 2} for i, picture in enumerate(_pictures(4, 8))]
    expected = torch.stack([build_transform(_config(8, hflip=0.0), train=True)(s["image"]) for s in same])
    torch.testing.assert_close(collate(same)["inputs"], expected, atol=1e-5, rtol=0)
    assert calls == [4]
    mixed = same[:2] + [{"image": _pictures(1, 12)[0], "label": 0}]
    assert collate(mixed)["inputs"].shape == (3, 3, 8, 8) and calls == [4]   # the per-image pipeline resized it
