"""Detection heads: the Hungarian matcher, the set loss on empty targets, FCOS targets and decoding in
pixels, and both heads plugged onto our ViT and a timm backbone."""
from __future__ import annotations

import pytest
import torch

import zoo
from heads.detection import mask_on_map, select_levels
from heads.detection_set_loss import SetLossWeights, assign, hungarian_match, set_loss

VIT = dict(img_size=64, patch_size=8, dim=32, depth=1, heads=2)
HEAD_ARGS = {"fcos": dict(dim=32, tower_depth=1), "detr": dict(dim=32, heads=2, depth=2, num_queries=6)}
BOX_OUTPUT = {"fcos": lambda head: head.box_distances, "detr": lambda head: head.box_embed[-1]}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    """Tiny models run faster on one thread, and far steadier on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(sizes: list[tuple[int, int]], boxes: list[list[list[float]]], labels: list[list[int]]) -> dict:
    """A padded batch of random images with the given (h, w) sizes and targets."""
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    mask = torch.zeros(len(sizes), height, width, dtype=torch.bool)
    for i, (h, w) in enumerate(sizes):
        mask[i, :h, :w] = True
    return {"inputs": torch.randn(len(sizes), 3, height, width) * mask[:, None], "mask": mask,
            "boxes": [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes],
            "labels": [torch.tensor(l, dtype=torch.long) for l in labels],
            "image_sizes": torch.tensor(sizes)}


# ----------------------------------------------------------------------------- matcher


def test_assign_finds_the_minimum_cost_matching() -> None:
    cost = torch.tensor([[5.0, 1.0, 9.0],
                         [1.0, 6.0, 9.0],
                         [9.0, 9.0, 0.5],
                         [2.0, 2.0, 2.0]])  # a spare query: never the cheapest way to cover an object
    queries, objects = assign(cost)
    assert queries.tolist() == [0, 1, 2] and objects.tolist() == [1, 0, 2]
    # with query 3 cheaper for object 0 than query 1 is, it takes that object
    cost[3] = torch.tensor([0.0, 9.0, 9.0])
    queries, objects = assign(cost)
    assert dict(zip(queries.tolist(), objects.tolist())) == {0: 1, 2: 2, 3: 0}


def test_assign_with_no_objects_is_empty() -> None:
    queries, objects = assign(torch.zeros(5, 0))
    assert queries.numel() == objects.numel() == 0 and queries.dtype == torch.long


def test_hungarian_match_recovers_a_permutation_and_skips_empty_images() -> None:
    targets = torch.tensor([[0.2, 0.3, 0.1, 0.2], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.4, 0.4]])  # cxcywh
    permutation = [2, 0, 1]  # query q predicts object permutation[q]
    boxes = torch.stack([targets[permutation], torch.rand(3, 4) * 0.5 + 0.25])[None].flatten(1, 2)  # (1, 6, 4)
    logits = torch.zeros(1, 6, 4)
    logits[0, torch.arange(3), torch.tensor([1, 3, 0])[permutation]] = 5.0
    matches = hungarian_match(logits.expand(2, -1, -1), boxes.expand(2, -1, -1),
                              [torch.tensor([1, 3, 0]), torch.zeros(0, dtype=torch.long)],
                              [targets, torch.zeros(0, 4)], SetLossWeights())
    queries, objects = matches[0]
    assert queries.tolist() == [0, 1, 2] and objects.tolist() == permutation
    assert matches[1][0].numel() == 0


def test_set_loss_is_finite_and_differentiable_without_objects() -> None:
    logits = torch.randn(2, 5, 4, requires_grad=True)
    boxes = torch.rand(2, 5, 4, requires_grad=True)
    parts = set_loss(logits, boxes, [torch.zeros(0, dtype=torch.long)] * 2, [torch.zeros(0, 4)] * 2,
                     SetLossWeights(), num_classes=3)
    total = sum(parts.values())
    total.backward()
    assert torch.isfinite(total) and parts["bbox"] == 0 and parts["giou"] == 0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert boxes.grad is None or torch.isfinite(boxes.grad).all()


@pytest.mark.parametrize("head", ["fcos", "detr"])
def test_head_loss_on_a_batch_without_objects_backpropagates(head: str) -> None:
    model = zoo.create_model("vit_tiny", head, backbone_args=VIT, num_classes=3, **HEAD_ARGS[head])
    batch = _batch([(64, 64), (48, 40)], [[], []], [[], []])
    losses = model.loss(model(batch), batch)
    losses["loss"].backward()
    assert all(torch.isfinite(v) for v in losses.values())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# ----------------------------------------------------------------------------- pyramid and FCOS


def test_levels_and_mask_on_maps() -> None:
    assert select_levels([(2, 8), (4, 8), (8, 16), (16, 32), (32, 64), (64, 64), (128, 64)], None) == [2, 3, 4]
    assert select_levels([(16, 8), (32, 8), (64, 8)], [32]) == [1]
    with pytest.raises(ValueError, match=r"strides \[8\] are not among"):
        select_levels([(16, 8)], [8])
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, :20, :12] = True
    on_map = mask_on_map(mask, (4, 4))[0]  # stride 8: cells whose first pixel is real
    assert on_map.sum(dim=1).tolist() == [2, 2, 2, 0] and on_map[:, 0].tolist() == [True, True, True, False]


def test_fcos_targets_assign_points_inside_the_smaller_box() -> None:
    model = zoo.create_model("vit_tiny", "fcos", backbone_args=VIT, num_classes=3, **HEAD_ARGS["fcos"])
    batch = _batch([(64, 64)], [[[0, 0, 40, 40], [8, 8, 24, 24]]], [[1, 2]])
    outputs = model(batch)
    classes, boxes = model.head.targets(outputs, batch["boxes"][0], batch["labels"][0])
    points = outputs["points"]
    at = {tuple(p.tolist()): (int(c), b.tolist()) for p, c, b in zip(points, classes, boxes)}
    assert at[(12.0, 12.0)] == (2, [8, 8, 24, 24])  # inside both boxes: the smaller one wins
    assert at[(28.0, 28.0)][0] == 1  # inside the large box only, near its centre
    assert at[(60.0, 60.0)][0] == 3  # background
    assert (classes < 3).sum() > 0


def test_fcos_decodes_boxes_in_image_pixels() -> None:
    model = zoo.create_model("vit_tiny", "fcos", backbone_args=VIT, num_classes=3, **HEAD_ARGS["fcos"]).eval()
    batch = _batch([(64, 64), (40, 48)], [[], []], [[], []])
    with torch.no_grad():
        outputs = model(batch)
    n = outputs["points"].shape[0]
    point = int(((outputs["points"] - torch.tensor([20.0, 12.0])).abs().sum(dim=1) < 1e-6).nonzero()[0])
    outputs["logits"] = torch.full((2, n, 3), -20.0)
    outputs["centerness"] = torch.full((2, n), 20.0)
    outputs["logits"][:, point, 2] = 20.0
    outputs["distances"][:, point] = torch.tensor([10.0, 5.0, 6.0, 50.0])  # reaches past the second image
    found = model.decode(outputs, batch=batch, score_threshold=0.5)
    assert found[0]["labels"].tolist() == [2] and found[0]["scores"].item() == pytest.approx(1.0)
    assert found[0]["boxes"].tolist() == [[10.0, 7.0, 26.0, 62.0]]
    assert found[1]["boxes"].tolist() == [[10.0, 7.0, 26.0, 40.0]]  # clipped to its own 40-pixel height


def test_fcos_ignores_padding_points() -> None:
    model = zoo.create_model("vit_tiny", "fcos", backbone_args=VIT, num_classes=3, **HEAD_ARGS["fcos"]).eval()
    batch = _batch([(64, 64), (24, 24)], [[], []], [[], []])
    with torch.no_grad():
        outputs = model(batch)
    outputs["logits"] = torch.full_like(outputs["logits"], 20.0)
    outputs["centerness"] = torch.full_like(outputs["centerness"], 20.0)
    found = model.decode(outputs, batch=batch, score_threshold=0.5, nms_iou=None, max_detections=10_000)
    assert len(found[1]["boxes"]) == 3 * 3 * 3 + 2 * 2 * 3 + 1 * 3  # real cells of the 8x8, 4x4, 2x2 maps, 3 classes
    assert len(found[0]["boxes"]) == (64 + 16 + 4) * 3


def test_detr_decodes_normalised_boxes_to_each_image_pixels() -> None:
    model = zoo.create_model("vit_tiny", "detr", backbone_args=VIT, num_classes=3, **HEAD_ARGS["detr"]).eval()
    batch = _batch([(64, 64), (32, 48)], [[], []], [[], []])
    with torch.no_grad():
        outputs = model(batch)
    outputs["logits"] = torch.full_like(outputs["logits"], -10.0)
    outputs["logits"][:, 0, 1] = 10.0
    outputs["boxes"][:, 0] = torch.tensor([0.5, 0.5, 0.5, 0.25])  # cx, cy, w, h of the image
    found = model.decode(outputs, batch=batch, score_threshold=0.5)
    assert found[0]["labels"].tolist() == [1] and found[0]["boxes"].tolist() == [[16.0, 24.0, 48.0, 40.0]]
    assert found[1]["boxes"].tolist() == [[12.0, 12.0, 36.0, 20.0]]


@pytest.mark.parametrize("head", ["fcos", "detr"])
@pytest.mark.parametrize("backbone", ["vit_tiny", "timm/resnet10t"])
def test_heads_plug_onto_vit_and_timm_backbones(backbone: str, head: str) -> None:
    model = zoo.create_model(backbone, head, backbone_args=VIT if backbone == "vit_tiny" else {}, num_classes=3,
                             **HEAD_ARGS[head])
    batch = _batch([(64, 64), (48, 56)], [[[4, 4, 30, 40]], [[10, 12, 40, 44], [0, 0, 8, 8]]], [[0], [2, 1]])
    outputs = model(batch)
    losses = model.loss(outputs, batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert all(p.grad is not None for p in model.head.parameters())
    box_output = BOX_OUTPUT[head](model.head)  # the layer that regresses the boxes
    assert all(p.grad.abs().sum() > 0 for p in box_output.parameters()), "no gradient reaches the box regression"
    found = model.decode(outputs, batch=batch, score_threshold=0.0, max_detections=7)
    assert [len(f["boxes"]) <= 7 for f in found] == [True, True]
    assert (found[1]["boxes"][:, 2] <= 56).all() and (found[1]["boxes"][:, 3] <= 48).all()


def test_detr_learns_to_fit_a_few_images() -> None:
    """The set loss falls when DETR (on a tiny ViT) fits 8 images of 1-2 boxes."""
    torch.manual_seed(0)
    model = zoo.create_model("vit_tiny", "detr", backbone_args=VIT, num_classes=3, **HEAD_ARGS["detr"])
    generator = torch.Generator().manual_seed(0)
    corners = torch.randint(0, 32, (8, 2, 2), generator=generator).float()
    boxes = [torch.cat([c, c + 24], dim=1)[: 1 + i % 2].tolist() for i, c in enumerate(corners)]
    batch = _batch([(64, 64)] * 8, boxes, [[i % 3, (i + 1) % 3][: 1 + i % 2] for i in range(8)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(model(batch), batch)
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
        losses.append(loss["loss"].item())
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])
    assert set(loss) == {"loss", "ce", "bbox", "giou", "ce_0", "bbox_0", "giou_0"}


def test_detr_cross_attention_prefers_cells_near_each_query_box() -> None:
    from heads.detection_detr import DETRHead

    reference = torch.tensor([[[0.5, 0.5, 0.2, 0.4]]])  # one query: cxcywh
    centres = torch.tensor([[[0.5, 0.5], [0.7, 0.5], [0.5, 0.1], [0.9, 0.9]]])  # (1, S, 2)
    real = torch.tensor([[True, True, True, False]])
    bias = DETRHead.locality(reference, centres, real)
    assert bias.shape == (1, 1, 1, 4)
    torch.testing.assert_close(bias[0, 0, 0, :3], torch.tensor([0.0, -1.0, -1.0]))
    assert bias[0, 0, 0, 3] == float("-inf")
