"""Vision Transformer backbones (image and patch size configurable) with a small feature pyramid."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.features import Features
from zoo.layers.attention import attention_mask
from zoo.layers.block import BlockConfig
from zoo.layers.norm import make_norm
from zoo.layers.stack import Stack
from zoo.registry import BACKBONES
from zoo.stems import ConvStem, PatchEmbed, ShiftedPatchEmbed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STEMS: dict[str, type[nn.Module]] = {"patch": PatchEmbed, "conv": ConvStem, "spt": ShiftedPatchEmbed}


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a ViT; the layout matches timm's so its weights convert by renaming."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    class_token: bool = True
    norm_eps: float = 1e-6       # timm: 1e-6; transformers ViT: 1e-12
    dropout: float = 0.0
    pyramid_levels: int = 3      # maps at strides p, 2p, 4p
    layer_heads: tuple[int, ...] | None = None   # per-layer head counts of a pruned model (None: ``heads``)
    layer_mlp: tuple[int, ...] | None = None     # per-layer MLP hidden widths of a pruned model
    stem: str = "patch"          # "patch" (timm's) | "conv" (early convolutions) | "spt" (shifted patches)
    drop_path: float = 0.0       # stochastic depth of the last block (0 at the first, linear between)
    lsa: bool = False            # locality self-attention in every block


class VisionTransformer(nn.Module):
    """Patch embedding + learned positions + blocks + final norm.

    ``Features.tokens`` is (B, 1 + N, D) with the class token first; ``Features.maps`` are
    the last layer's patch tokens as a (B, D, H/p, W/p) map and its 2x, 4x max-pooled copies.
    ``cfg.stem`` picks the patch embedding (:data:`STEMS`); the small-data options (conv or shifted-patch
    stem, drop path, locality self-attention) are off by default, which is timm's layout.
    Inputs of another size than ``img_size`` get bicubically resized position embeddings; in a
    padded batch each image gets those of its own size, so its features do not depend on the batch.
    """

    modality = "image"
    causal = False
    padding_sensitive = False   # see forward: positions and masks follow each image's own size

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg, self.dim = cfg, cfg.dim
        if cfg.stem not in STEMS:
            raise ZooError(f"ViT stem must be one of {sorted(STEMS)}, got {cfg.stem!r}; set --backbone-args "
                           "'{\"stem\": \"conv\"}' or leave it out")
        self.patch_embed = STEMS[cfg.stem](cfg.patch_size, cfg.in_chans, cfg.dim)
        grid = cfg.img_size // cfg.patch_size
        prefix = 1 if cfg.class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.randn(1, prefix + grid * grid, cfg.dim) * 0.02)
        self.stack = Stack(BlockConfig(cfg.dim, cfg.heads, cfg.mlp_ratio, norm_eps=cfg.norm_eps, dropout=cfg.dropout,
                                       drop_path=cfg.drop_path, lsa=cfg.lsa),
                           cfg.depth, cfg.layer_heads, cfg.layer_mlp)
        self.norm = make_norm("layer", cfg.dim, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def _positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """Patch position embeddings (1, h*w, D) for a ``grid`` of (h, w) patches (bicubic resize)."""
        prefix = 1 if self.cls_token is not None else 0
        patch_pos = self.pos_embed[:, prefix:]
        side = int(patch_pos.shape[1] ** 0.5)
        if grid != (side, side):
            patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, s, s)
            patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
            patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
        return patch_pos

    def _padded_positions(self, grids: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Each image's positions for its own (h_i, w_i) grid, placed top-left in the padded ``grid``.

        grids: (B, 2) long real patch rows and columns -> (B, H*W, D), zero on padding. An image's
        positions depend only on its own size, so batching never changes its features.
        """
        out = self.pos_embed.new_zeros(grids.shape[0], grid[0], grid[1], self.dim)
        for size in {tuple(g) for g in grids.tolist()}:
            rows = (grids == torch.tensor(size, device=grids.device)).all(dim=1)
            if min(size) > 0:
                out[rows, : size[0], : size[1]] = self._positions(size).reshape(size[0], size[1], -1).to(out.dtype)
        return out.flatten(1, 2)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *, cache: None = None) -> Features:
        """inputs: (B, 3, H, W) normalised; mask: (B, H, W) bool True = real pixel, or None.

        Images are top-left aligned in the padded batch; a patch is real when all its pixels are
        (the patches a lone image of that size would have); padded patches are masked out.
        """
        p = self.cfg.patch_size
        grid = (inputs.shape[2] // p, inputs.shape[3] // p)
        token_mask = region = None
        if mask is not None:
            cells = mask[:, : grid[0] * p, : grid[1] * p].reshape(mask.shape[0], grid[0], p, grid[1], p)
            patch_mask = cells.all(dim=4).all(dim=2)  # (B, H/p, W/p): patches made of real pixels only
            rows, cols = patch_mask.any(dim=2).sum(dim=1), patch_mask.any(dim=1).sum(dim=1)  # (B,) real patches
            grids = torch.stack([rows, cols], dim=1)  # (B, 2)
            pixel_rows = torch.arange(mask.shape[1], device=mask.device)[None, :, None] < (rows * p)[:, None, None]
            pixel_cols = torch.arange(mask.shape[2], device=mask.device)[None, None, :] < (cols * p)[:, None, None]
            region = pixel_rows & pixel_cols  # (B, H, W): the pixels of each image's real patches
            token_mask = patch_mask.flatten(1)  # (B, N)
        x, grid = self.patch_embed(inputs, region)  # (B, N, D)
        x = x + (self._positions(grid) if mask is None else self._padded_positions(grids, grid))
        if self.cls_token is not None:
            prefix_pos = self.pos_embed[:, :1]
            x = torch.cat([(self.cls_token + prefix_pos).expand(x.shape[0], -1, -1), x], dim=1)
            if token_mask is not None:
                token_mask = F.pad(token_mask, (1, 0), value=True)
        attn_mask, _ = attention_mask(token_mask, x.shape[1], causal=False)
        x = self.norm(self.stack(self.drop(x), mask=attn_mask))
        prefix = 1 if self.cls_token is not None else 0
        fmap = x[:, prefix:].transpose(1, 2).reshape(x.shape[0], self.dim, *grid)  # (B, D, H/p, W/p)
        return Features(x, token_mask, self._pyramid(fmap, None if mask is None else patch_mask))

    def _pyramid(self, fmap: torch.Tensor, patch_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """``fmap`` and its 2x, 4x max-pooled copies; padded cells are zero and never pooled into real ones."""
        if patch_mask is None:
            maps = [fmap]
            for _ in range(self.cfg.pyramid_levels - 1):
                maps.append(F.max_pool2d(maps[-1], 2, ceil_mode=True))
            return maps
        cell_mask = patch_mask[:, None]  # (B, 1, h, w)
        maps = [fmap.masked_fill(~cell_mask, 0.0)]
        for _ in range(self.cfg.pyramid_levels - 1):
            pooled = F.max_pool2d(maps[-1].masked_fill(~cell_mask, float("-inf")), 2, ceil_mode=True)
            cell_mask = F.max_pool2d(cell_mask.float(), 2, ceil_mode=True) > 0
            maps.append(pooled.masked_fill(~cell_mask, 0.0))
        return maps


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _register(name: str, defaults: dict) -> None:
    @BACKBONES.register(name, modality="image", causal=False, padding_sensitive=False,
                        input=f"images (B, 3, {defaults.get('img_size', 224)}, ...)", mean=IMAGENET_MEAN,
                        std=IMAGENET_STD, config=asdict(ViTConfig(**defaults)))
    def build(**overrides: object) -> VisionTransformer:
        return VisionTransformer(ViTConfig(**{**defaults, **overrides}))

    build.__doc__ = f"ViT {name}: {defaults}"


_register("vit_tiny", dict(dim=192, depth=12, heads=3))
_register("vit_small", dict(dim=384, depth=12, heads=6))
_register("vit_base", dict(dim=768, depth=12, heads=12))
# small-data variants (Xiao et al. 2021; Lee et al. 2021): the vit_tiny shape with their stems and attention
_register("vit_tiny_conv", {"dim": 192, "depth": 12, "heads": 3, "stem": "conv"})
_register("vit_tiny_spt_lsa", {"dim": 192, "depth": 12, "heads": 3, "stem": "spt", "lsa": True})
