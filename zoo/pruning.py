"""Pruning a ZooModel: structured (whole attention heads, whole MLP channels: smaller matrices) or
unstructured (magnitude, ``torch.nn.utils.prune``, zeros inside the same matrices).

Structured pruning works on the blocks of zoo's own backbones (``backbone.stack.blocks``): in every
layer it keeps the ``1 - amount`` most important heads and MLP channels (at least one of each),
slices the weights of the kept ones out of the state dict and rebuilds the model from its registry
name with the per-layer sizes as backbone arguments (``layer_heads``, ``layer_mlp``), so the
pruned model's ``config.json`` says them and ``zoo.load`` rebuilds it. Importance is the L1 norm
of the weights a head or channel owns: a head's rows of the fused ``qkv`` projection plus its
columns of the output projection; a channel's row(s) of ``fc1`` (gate and value for SwiGLU)
plus its column of ``fc2``. A Conformer block's two feed-forwards are pruned to the same width,
each by its own importance.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from zoo.errors import ZooError
from zoo.layers.block import Block
from zoo.layers.mlp import MLP
from zoo.model import ZooModel, create_backbone, create_head

STRUCTURES = ("heads", "mlp", "both", "none")
SCOPES = ("global", "layer")        # magnitude pruning: weights ranked over all layers together, or in each


@dataclass
class PruneReport:
    """What :func:`prune_model` did: parameter counts, the sizes kept, the sparsity of the pruned weights."""

    structured: str
    amount: float
    parameters_before: int
    parameters_after: int
    layer_heads: list[int] = field(default_factory=list)
    layer_mlp: list[int] = field(default_factory=list)
    sparsity: float | None = None         # unstructured: fraction of zeros in the pruned weights
    scope: str | None = None              # unstructured: how the weights were ranked (:data:`SCOPES`)


def count_parameters(model: nn.Module) -> int:
    """Parameters of ``model``, a tied tensor once."""
    return sum(p.numel() for p in model.parameters())


def kept(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Indices (ascending) of the ``1 - amount`` highest ``scores`` (K,), at least one of them."""
    keep = max(1, scores.numel() - round(amount * scores.numel()))
    return scores.topk(keep).indices.sort().values


def head_scores(qkv: torch.Tensor, proj: torch.Tensor, heads: int) -> torch.Tensor:
    """L1 importance (H,) of each head: its rows of ``qkv`` (3*H*hs, D) and columns of ``proj`` (D, H*hs)."""
    dim = qkv.shape[1]
    per_qkv = qkv.abs().view(3, heads, -1, dim).sum(dim=(0, 2, 3))
    per_proj = proj.abs().view(proj.shape[0], heads, -1).sum(dim=(0, 2))
    return per_qkv + per_proj


def channel_scores(fc1: torch.Tensor, fc2: torch.Tensor, gated: bool) -> torch.Tensor:
    """L1 importance (W,) of each hidden channel: its row(s) of ``fc1`` ((2)W, D) and column of ``fc2`` (D, W)."""
    width = fc2.shape[1]
    rows = fc1.abs().view(2 if gated else 1, width, -1).sum(dim=(0, 2))
    return rows + fc2.abs().sum(dim=0)


def _slice_heads(state: dict[str, torch.Tensor], prefix: str, heads: int, keep: torch.Tensor) -> None:
    """Keep heads ``keep`` of the attention at ``prefix`` in ``state`` (qkv rows, proj columns)."""
    qkv = state[f"{prefix}qkv.weight"]
    dim = qkv.shape[1]
    state[f"{prefix}qkv.weight"] = qkv.view(3, heads, -1, dim)[:, keep].reshape(-1, dim)
    if f"{prefix}qkv.bias" in state:
        state[f"{prefix}qkv.bias"] = state[f"{prefix}qkv.bias"].view(3, heads, -1)[:, keep].reshape(-1)
    proj = state[f"{prefix}proj.weight"]
    state[f"{prefix}proj.weight"] = proj.view(proj.shape[0], heads, -1)[:, keep].reshape(proj.shape[0], -1)


def _slice_channels(state: dict[str, torch.Tensor], prefix: str, gated: bool, keep: torch.Tensor) -> None:
    """Keep hidden channels ``keep`` of the MLP at ``prefix`` in ``state`` (fc1 rows, fc2 columns)."""
    parts = 2 if gated else 1
    width = state[f"{prefix}fc2.weight"].shape[1]
    fc1 = state[f"{prefix}fc1.weight"]
    state[f"{prefix}fc1.weight"] = fc1.view(parts, width, -1)[:, keep].reshape(-1, fc1.shape[1])
    if f"{prefix}fc1.bias" in state:
        state[f"{prefix}fc1.bias"] = state[f"{prefix}fc1.bias"].view(parts, width)[:, keep].reshape(-1)
    state[f"{prefix}fc2.weight"] = state[f"{prefix}fc2.weight"][:, keep]


def structured_applies(model: ZooModel) -> bool:
    """Whether structured pruning can remove heads and channels: the backbone is one of zoo's own, with
    transformer blocks (not timm, torchaudio or transformers)."""
    blocks = list(getattr(getattr(model.backbone, "stack", None), "blocks", []))
    spec = getattr(model.backbone, "zoo_spec", {})
    return bool(blocks) and all(isinstance(b, Block) for b in blocks) and "/" not in spec.get("name", "/")


def _blocks(model: ZooModel) -> list[Block]:
    """The backbone's zoo blocks; refuses a backbone without them (timm, torchaudio, transformers)."""
    if not structured_applies(model):
        spec = getattr(model.backbone, "zoo_spec", {})
        raise ZooError(f"backbone {spec.get('name', type(model.backbone).__name__)!r} has no zoo transformer "
                       f"blocks to remove heads or channels from; use --structured none (magnitude pruning)")
    return list(model.backbone.stack.blocks)


def prune_structured(model: ZooModel, amount: float, heads: bool = True, mlp: bool = True) -> ZooModel:
    """A new, smaller model: in every backbone layer ``amount`` of the heads (``heads``) and of the MLP
    channels (``mlp``) removed, the least important first. ``amount`` 0 gives the same outputs."""
    blocks = _blocks(model)
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    layer_heads, layer_mlp = [], []
    for index, block in enumerate(blocks):
        prefix = f"backbone.stack.blocks.{index}."
        count = block.attn.heads
        if heads:
            keep = kept(head_scores(state[f"{prefix}attn.qkv.weight"], state[f"{prefix}attn.proj.weight"], count),
                        amount)
            _slice_heads(state, f"{prefix}attn.", count, keep)
            count = keep.numel()
        layer_heads.append(count)
        width = block.mlp.fc2.in_features
        for name in ("ff1", "mlp") if mlp else ():      # a Conformer block's two feed-forwards, or the one
            if isinstance(getattr(block, name, None), MLP):
                gated = getattr(block, name).kind == "swiglu"
                scores = channel_scores(state[f"{prefix}{name}.fc1.weight"], state[f"{prefix}{name}.fc2.weight"], gated)
                keep = kept(scores, amount)
                _slice_channels(state, f"{prefix}{name}.", gated, keep)
                width = keep.numel()
        layer_mlp.append(width)
    spec = model.backbone.zoo_spec
    backbone = create_backbone(spec["name"], **{**spec["args"], "layer_heads": layer_heads, "layer_mlp": layer_mlp})
    head = create_head(model.head.zoo_spec["name"], backbone, **model.head.zoo_spec["args"])
    pruned = ZooModel(backbone, head, model.tokenizer, model.preprocessing, model.task)
    pruned.load_state_dict(state)
    return pruned


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") of every Linear and Conv layer whose weight no other layer shares (tied
    projections are left alone: pruning one would untie it)."""
    owners: dict[int, list[nn.Module]] = {}
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            owners.setdefault(id(module.weight), []).append(module)
    shared = {id(p) for m in model.modules() if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))
              for p in m.parameters(recurse=False)}
    return [(mods[0], "weight") for key, mods in owners.items() if len(mods) == 1 and key not in shared]


def prune_magnitude(model: nn.Module, amount: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Zero the ``amount`` smallest-magnitude weights of :func:`prunable_weights`, made permanent; returns
    the masks (True = kept) by parameter name, for keeping those weights at zero while fine-tuning.

    ``scope`` ``global`` ranks all the weights together (``torch.nn.utils.prune.global_unstructured``);
    ``layer`` takes ``amount`` of each layer's weights. Where norms after the layers make their weight
    scales unrelated (a CNN's batch norms), a global ranking can empty the layers of small weights (at 0.3,
    85% of a detector's FCOS head); per layer, every layer keeps ``1 - amount`` of its weights."""
    if scope not in SCOPES:
        raise ZooError(f"--magnitude-scope {scope}: unknown; use one of {', '.join(SCOPES)}")
    targets = prunable_weights(model)
    if not targets:
        raise ZooError("the model has no linear or convolution weights to prune")
    if scope == "global":
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=amount)
    else:
        for module, name in targets:
            torch_prune.l1_unstructured(module, name, amount=amount)
    masks = {id(module): module.weight_mask.bool() for module, _ in targets}
    for module, name in targets:
        torch_prune.remove(module, name)
    names = {id(module): name for name, module in model.named_modules()}
    return {f"{names[key]}.weight": mask for key, mask in masks.items()}


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros among the weights :func:`prunable_weights` names."""
    weights = [module.weight for module, _ in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(total, 1)


def keep_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Hold pruned weights at zero while training: each named parameter's gradient is multiplied by
    its mask (with zero gradients AdamW leaves a zero weight at zero)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].register_hook(lambda grad, mask=mask: grad * mask.to(grad.device, grad.dtype))


def prune_model(model: ZooModel, amount: float, structured: str = "both", scope: str = "global"
                ) -> tuple[ZooModel, PruneReport, dict[str, torch.Tensor]]:
    """Prune ``model`` as ``structured`` says (see :data:`STRUCTURES`; ``none``: magnitude pruning ranked
    as ``scope`` says, :func:`prune_magnitude`): (pruned model, report, masks of the zeroed weights,
    empty for structured pruning). ``model`` itself is left as it was for structured pruning and pruned
    in place for ``none``."""
    if structured not in STRUCTURES:
        raise ZooError(f"--structured {structured}: unknown; use one of {', '.join(STRUCTURES)}")
    if not 0.0 <= amount < 1.0:
        raise ZooError(f"--amount {amount}: give the fraction to remove, in [0, 1)")
    if getattr(model, "lora", None) is not None:
        raise ZooError("the model has LoRA adapters; fold them in first with `zoo merge-lora`, then prune")
    before = count_parameters(model)
    masks: dict[str, torch.Tensor] = {}
    if structured == "none":
        masks = prune_magnitude(model, amount, scope)
        pruned = model
    else:
        pruned = prune_structured(model, amount, heads=structured in ("heads", "both"),
                                  mlp=structured in ("mlp", "both"))
    blocks = [b for b in getattr(getattr(pruned.backbone, "stack", None), "blocks", []) if isinstance(b, Block)]
    report = PruneReport(structured, amount, before, count_parameters(pruned), [b.attn.heads for b in blocks],
                         [b.mlp.fc2.in_features for b in blocks], *((sparsity(pruned), scope) if structured == "none"
                                                                    else (None, None)))
    return pruned, report, masks
