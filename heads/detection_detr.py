"""DETR: learned object queries decoded against the backbone's maps, trained with a set loss (Carion et al. 2020).

Each chosen map is projected to ``dim`` channels (1x1 conv) and flattened; the memory is every
level's cells, with fixed 2-D sine-cosine positions plus a learned per-level embedding. The
positions of all levels come from one ``sincos_2d_table`` of the finest map, subsampled at
each coarser map's cells, so one place has one position on every level. As in DETR,
positions go into the cross-attention keys only: each decoder layer's keys are projected from
memory + positions and its values from the memory. The pixel mask is downsampled to every
map, so queries never attend to padding. ``encoder_depth`` optional blocks of self-attention
refine the memory first (their input gets the positions once).

The decoder is ``depth`` shared :class:`~zoo.layers.block.Block` s with cross-attention over
``num_queries`` learned queries. DETR itself converges in hundreds of epochs; two additions of
its successors make it learn in a few on small data: every query owns a learned anchor box
(centres spread over the image at initialisation) that each layer refines (the box MLP
predicts a change of its logit, and the next layer starts from the detached result: Deformable
DETR's iterative refinement), and the current box, through a small MLP, is the query's
position (DAB-DETR): a layer computes ``block(content + position) - position``, i.e. the
position enters every sub-layer's input without piling up in the residual stream; and the
cross-attention of a query is biased towards the cells near its current box by adding
``-((x - cx) / w)**2 - ((y - cy) / h)**2`` to its logits (SMCA-DETR's Gaussian prior, with
cell centres normalised by each image's own size). A shared
final norm, class linear (``num_classes`` + "no object") and 3-layer box MLP read every layer;
the earlier layers' predictions are the auxiliary outputs of the set loss
(:mod:`heads.detection_set_loss`). No NMS is needed when decoding.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torchvision.ops import box_convert

from heads.base import SoftOutputs
from heads.detection import DetectionHead, grid_points, image_sizes, mask_on_map, postprocess
from heads.detection_set_loss import SetLossWeights, set_loss
from zoo.features import Features
from zoo.layers.attention import attention_mask
from zoo.layers.block import Block, BlockConfig
from zoo.layers.norm import make_norm
from zoo.layers.position import sincos_2d_table
from zoo.layers.stack import Stack
from zoo.registry import HEADS

ANCHOR_SIZE = 0.2  # initial width and height of every query's anchor box, as a fraction of the image


class DETRHead(DetectionHead):
    """Input projections + positions -> [encoder] -> query decoder (cross-attention) -> class and box per query."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, dim: int = 128, heads: int = 4, depth: int = 3,
                 encoder_depth: int = 0, num_queries: int = 20, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 strides: Sequence[int] | None = None, weights: SetLossWeights = SetLossWeights(),
                 aux_loss: bool = True, labels: Sequence[str] | None = None) -> None:
        super().__init__(backbone, num_classes, strides, labels)
        self.weights, self.aux_loss = weights, aux_loss
        self.input_proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in self.in_channels)
        self.level_embed = nn.Parameter(torch.zeros(len(self.in_channels), dim))
        self.encoder = None
        if encoder_depth:
            self.encoder = Stack(BlockConfig(dim, heads, mlp_ratio, dropout=dropout), encoder_depth)
        self.queries = nn.Embedding(num_queries, dim)
        anchors = torch.cat([torch.rand(num_queries, 2), torch.full((num_queries, 2), ANCHOR_SIZE)], dim=1)
        self.anchors = nn.Parameter(torch.logit(anchors))  # (Q, 4) logits of normalised cxcywh
        self.anchor_embed = nn.Sequential(nn.Linear(4, dim), nn.ReLU(), nn.Linear(dim, dim))
        config = BlockConfig(dim, heads, mlp_ratio, dropout=dropout, cross=True)
        self.decoder = nn.ModuleList(Block(config) for _ in range(depth))
        self.norm = make_norm("layer", dim)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.box_embed = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),
                                       nn.Linear(dim, 4))
        nn.init.normal_(self.level_embed, std=0.02)
        nn.init.zeros_(self.box_embed[-1].weight)
        nn.init.zeros_(self.box_embed[-1].bias)

    def memory(self, features: Features, mask: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(memory (B, S, dim), positions (1, S, dim), real cells (B, S) or None, cell centres (S, 2) xy pixels)
        over every chosen level."""
        cells, positions, real = [], [], []
        maps = [proj(x) for proj, x in zip(self.input_proj, self.levels(features))]  # (B, dim, h_l, w_l)
        finest = sincos_2d_table(*maps[0].shape[-2:], maps[0].shape[1]).to(maps[0].device, maps[0].dtype)
        finest = finest.view(*maps[0].shape[-2:], -1)  # (h_0, w_0, dim)
        for level, (x, stride) in enumerate(zip(maps, self.strides)):
            h, w = x.shape[-2:]
            step = stride // self.strides[0]
            cells.append(x.flatten(2).transpose(1, 2))  # (B, h*w, dim)
            table = finest[::step, ::step][:h, :w].reshape(h * w, -1)  # (h*w, dim): the finest cell at each cell
            positions.append(table + self.level_embed[level].to(x.dtype))
            on_map = mask_on_map(mask, (h, w))
            real.append(None if on_map is None else on_map.flatten(1))
        memory, pos = torch.cat(cells, dim=1), torch.cat(positions)[None]
        centres, _, _ = grid_points([tuple(m.shape[-2:]) for m in maps], self.strides, memory.device)
        return memory, pos, None if mask is None else torch.cat(real, dim=1), centres

    @staticmethod
    def locality(reference: torch.Tensor, centres: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """Cross-attention bias (B, 1, Q, S): ``-(dx / w)**2 - (dy / h)**2`` from each query's box (B, Q, 4)
        cxcywh to every cell centre (B, S, 2) (normalised); padding cells get -inf."""
        extent = reference[:, :, None, 2:].clamp(min=1e-3)  # (B, Q, 1, 2)
        offset = (centres[:, None] - reference[:, :, None, :2]) / extent  # (B, Q, S, 2)
        bias = -offset.square().sum(dim=-1)  # (B, Q, S)
        if real is not None:
            bias = bias.masked_fill(~real[:, None], float("-inf"))
        return bias[:, None]

    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``logits`` (B, Q, C+1), ``boxes`` (B, Q, 4) normalised cxcywh; earlier layers' ``aux_logits``,
        ``aux_boxes`` (L-1, B, Q, .); ``image_sizes`` (B, 2)."""
        memory, pos, real, centres = self.memory(features, batch.get("mask"))
        if self.encoder is not None:
            memory = self.encoder(memory + pos, mask=attention_mask(real, memory.shape[1], causal=False)[0])
        sizes = image_sizes(batch)
        centres = centres[None] / sizes.flip(-1)[:, None].to(centres.dtype)  # (B, S, 2) in each image's [0, 1]
        content = self.queries.weight[None].expand(memory.shape[0], -1, -1)  # (B, Q, dim)
        reference = self.anchors.sigmoid()[None].expand(memory.shape[0], -1, -1)  # (B, Q, 4)
        logits, boxes = [], []
        for block in self.decoder:
            keys, _ = block.cross_attn.project_context(memory + pos)
            _, values = block.cross_attn.project_context(memory)
            position = self.anchor_embed(reference)  # (B, Q, dim)
            bias = self.locality(reference, centres, real).to(memory.dtype)
            content = block(content + position, context_kv=(keys, values), context_mask=bias) - position
            hidden = self.norm(content)
            logits.append(self.class_embed(hidden))  # (B, Q, C+1)
            boxes.append((torch.logit(reference, eps=1e-5) + self.box_embed(hidden)).sigmoid())  # (B, Q, 4)
            reference = boxes[-1].detach()
        logits, boxes = torch.stack(logits), torch.stack(boxes)  # (L, B, Q, C+1), (L, B, Q, 4)
        return {"logits": logits[-1], "boxes": boxes[-1], "aux_logits": logits[:-1], "aux_boxes": boxes[:-1],
                "image_sizes": sizes}

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``loss`` = the sum of the weighted parts ``ce``, ``bbox``, ``giou`` (+ ``ce_0``... per auxiliary layer)."""
        device = outputs["boxes"].device
        scale = outputs["image_sizes"].flip(-1).repeat(1, 2).float()  # (B, 4): w, h, w, h
        target_boxes = [box_convert(b.to(device).float() / s, "xyxy", "cxcywh") for b, s in zip(batch["boxes"], scale)]
        target_labels = [labels.to(device) for labels in batch["labels"]]
        parts = set_loss(outputs["logits"], outputs["boxes"], target_labels, target_boxes, self.weights,
                         self.num_classes)
        if self.aux_loss:
            for layer, (logits, boxes) in enumerate(zip(outputs["aux_logits"], outputs["aux_boxes"])):
                aux = set_loss(logits, boxes, target_labels, target_boxes, self.weights, self.num_classes)
                parts.update({f"{name}_{layer}": value for name, value in aux.items()})
        return {"loss": sum(parts.values()), **parts}

    def soft_outputs(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> SoftOutputs:
        """Every query's class logits (B*Q, C+1) and box (B*Q, 4), normalised cxcywh."""
        return SoftOutputs(outputs["logits"].flatten(0, 1), boxes=outputs["boxes"].flatten(0, 1))

    @torch.no_grad()
    def decode(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any] | None = None, *,
               score_threshold: float = 0.05, max_detections: int = 100, nms_iou: float | None = None,
               class_agnostic: bool = False, **options: Any) -> list[dict[str, torch.Tensor]]:
        """Each query's best real class and its probability; boxes scaled to each image's pixels."""
        sizes = image_sizes(batch) if batch is not None else outputs["image_sizes"]
        probs = outputs["logits"].float().softmax(dim=-1)[..., :-1]  # (B, Q, C)
        scores, labels = probs.max(dim=-1)  # (B, Q)
        scale = sizes.flip(-1).repeat(1, 2).float()[:, None]  # (B, 1, 4): w, h, w, h
        boxes = box_convert(outputs["boxes"].float(), "cxcywh", "xyxy") * scale  # (B, Q, 4) pixels
        return [postprocess(b, s, l, size, score_threshold=score_threshold, max_detections=max_detections,
                            nms_iou=nms_iou, class_agnostic=class_agnostic)
                for b, s, l, size in zip(boxes, scores, labels, sizes.tolist())]


@HEADS.register("detr", accepts=("image",))
def detr(backbone: nn.Module, num_classes: int, dim: int = 128, heads: int = 4, depth: int = 3,
         encoder_depth: int = 0, num_queries: int = 20, mlp_ratio: float = 4.0, dropout: float = 0.0,
         strides: list[int] | None = None, class_weight: float = 1.0, bbox_weight: float = 5.0,
         giou_weight: float = 2.0, no_object_weight: float = 0.1, aux_loss: bool = True,
         labels: list[str] | None = None) -> DETRHead:
    """DETR set-prediction head on the backbone's maps (default: the finest three with strides 8..64)."""
    weights = SetLossWeights(class_weight, bbox_weight, giou_weight, no_object_weight)
    return DETRHead(backbone, num_classes, dim=dim, heads=heads, depth=depth, encoder_depth=encoder_depth,
                    num_queries=num_queries, mlp_ratio=mlp_ratio, dropout=dropout, strides=strides,
                    weights=weights, aux_loss=aux_loss, labels=labels)
