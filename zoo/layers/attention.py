"""Multi-head attention on ``F.scaled_dot_product_attention`` with padding/causal masks and a KV cache."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.position import RotaryEmbedding


class KVCache:
    """Keys and values of every layer of a decoder, for incremental decoding.

    ``dynamic`` caches grow by concatenation; a ``static`` cache preallocates ``capacity``
    positions so shapes stay fixed for ``torch.compile`` and exported decoder steps (unwritten
    slots are masked out). A static cache is written in place with ``index_copy_`` at the slots
    ``position + arange(T)``, ``position`` being a 0-d long tensor on the cache's device: the
    write position is data, not a Python int, so one compiled or exported graph serves every
    decode position. ``key_mask`` (B, L) records which cached positions are real (left padding
    is False).
    """

    def __init__(self, num_layers: int, capacity: int | None = None) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.capacity = capacity
        self.length = 0                       # positions written so far (counted on the host)
        self.position: torch.Tensor | None = None  # static: () long, the first unwritten slot
        self.slots: torch.Tensor | None = None     # static: (T,) long, the slots this forward writes
        self.key_mask: torch.Tensor | None = None  # (B, L) bool over written (dynamic) or all (static) slots
        self.next_position: torch.Tensor | None = None  # (B,) position id of each row's next token

    @classmethod
    def from_tensors(cls, keys: torch.Tensor, values: torch.Tensor, key_mask: torch.Tensor,
                     position: torch.Tensor, next_position: torch.Tensor | None = None) -> "KVCache":
        """A static cache holding stacked (layers, B, nh, L, hs) ``keys``/``values``, the (B, L)
        ``key_mask`` and the () ``position`` of the first free slot (an exported decoder step's
        inputs). The tensors are written in place: pass copies to keep the originals."""
        cache = cls(keys.shape[0], keys.shape[3])
        cache.keys, cache.values = list(keys.unbind(0)), list(values.unbind(0))
        cache.key_mask, cache.position, cache.next_position = key_mask, position, next_position
        return cache

    @property
    def static(self) -> bool:
        return self.capacity is not None

    @property
    def offset(self) -> int | torch.Tensor:
        """Where the next positions go: the static cache's ``position`` tensor, else the host count."""
        return self.position if self.static and self.position is not None else self.length

    def append_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Record the (B, T) mask of new positions; return the (B, L) mask over all keys."""
        batch, steps = mask.shape
        if self.static:
            if self.key_mask is None:
                self.key_mask = torch.zeros(batch, self.capacity, dtype=torch.bool, device=mask.device)
            if self.position is None:
                self.position = torch.zeros((), dtype=torch.long, device=mask.device)
            if not torch.compiler.is_compiling() and self.length + steps > self.capacity:
                raise ValueError(f"static KV cache of {self.capacity} positions is full ({self.length} + {steps})")
            self.slots = self.position + torch.arange(steps, device=mask.device)  # (T,)
            self.key_mask.index_copy_(1, self.slots, mask)
        else:
            self.key_mask = mask if self.key_mask is None else torch.cat([self.key_mask, mask], dim=1)
        return self.key_mask

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add (B, nh, T, hs) keys/values of ``layer``; return all keys/values to attend to.

        A static cache writes at the slots :meth:`append_mask` chose for this forward."""
        if self.static:
            if self.keys[layer] is None:
                shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
                self.keys[layer] = k.new_zeros(shape)
                self.values[layer] = v.new_zeros(shape)
            if self.slots is None:
                raise ValueError("a static KV cache is written after append_mask chose the slots of the new positions")
            self.keys[layer].index_copy_(2, self.slots, k)
            self.values[layer].index_copy_(2, self.slots, v)
        else:
            old_k, old_v = self.keys[layer], self.values[layer]
            self.keys[layer] = k if old_k is None else torch.cat([old_k, k], dim=2)
            self.values[layer] = v if old_v is None else torch.cat([old_v, v], dim=2)
        return self.keys[layer], self.values[layer]

    def advance(self, steps: int) -> None:
        """Mark ``steps`` more positions as written (call once per forward, after every layer)."""
        self.length += steps
        if self.static and self.position is not None:
            self.position = self.position + steps
            self.slots = None

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search): every tensor's dim 0 is indexed by ``index``."""
        self.keys = [None if k is None else k.index_select(0, index) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, index) for v in self.values]
        if self.key_mask is not None:
            self.key_mask = self.key_mask.index_select(0, index)
        if self.next_position is not None:
            self.next_position = self.next_position.index_select(0, index)


def attention_mask(key_mask: torch.Tensor | None, query_len: int, causal: bool,
                   query_offset: int | torch.Tensor = 0) -> tuple[torch.Tensor | None, bool]:
    """Build SDPA's mask. Returns ``(mask (B, 1, Tq, Lk) bool True = attend, or None, is_causal)``.

    ``query_offset``: the position of the first query, a Python int or a 0-d tensor (a static
    cache's :attr:`KVCache.offset`).

    Rows that would attend to nothing attend to everything instead, so outputs and gradients
    stay finite (those rows are padding and are ignored downstream).
    """
    if key_mask is None and not causal:
        return None, False
    if key_mask is None and isinstance(query_offset, int) and query_offset == 0:
        return None, True  # plain causal: SDPA's fast path
    if key_mask is None:
        raise ValueError("a causal mask with an offset needs the key mask")
    keys = key_mask.shape[1]
    mask = key_mask[:, None, None, :]  # (B, 1, 1, Lk)
    if causal:
        q_pos = torch.arange(query_len, device=key_mask.device)[:, None] + query_offset
        k_pos = torch.arange(keys, device=key_mask.device)[None, :]
        mask = mask & (k_pos <= q_pos)  # (B, 1, Tq, Lk)
    else:
        mask = mask.expand(-1, -1, query_len, -1)
    mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask, False


class Attention(nn.Module):
    """Self- or cross-attention with fused projections.

    Self-attention uses one fused ``qkv`` linear (the layout timm uses, so ViT weights convert
    by renaming); cross-attention has ``q`` and a fused ``kv`` over the context dimension.
    ``head_dim`` (default ``dim // heads``) lets a pruned layer keep fewer heads of the original
    width: the projections then map ``dim`` to ``heads * head_dim`` and back.

    ``lsa`` (locality self-attention, Lee et al. 2021, for small-data ViTs) learns the softmax
    temperature (``temperature``, initialised to ``1 / sqrt(head_dim)``) and masks the diagonal, so
    no token attends to itself; it is for encoders (no causal mask, no KV cache).
    """

    def __init__(self, dim: int, heads: int, *, cross: bool = False, context_dim: int | None = None,
                 bias: bool = True, dropout: float = 0.0, head_dim: int | None = None, lsa: bool = False) -> None:
        super().__init__()
        if head_dim is None and dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if heads < 1:
            raise ValueError(f"an attention layer needs at least one head, got {heads}")
        if lsa and cross:
            raise ValueError("locality self-attention (lsa) is self-attention; cross-attention cannot use it")
        self.heads, self.head_dim, self.cross = heads, head_dim or dim // heads, cross
        inner = heads * self.head_dim
        if cross:
            self.q = nn.Linear(dim, inner, bias=bias)
            self.kv = nn.Linear(context_dim or dim, 2 * inner, bias=bias)
        else:
            self.qkv = nn.Linear(dim, 3 * inner, bias=bias)
        self.proj = nn.Linear(inner, dim, bias=bias)
        self.dropout = dropout
        self.lsa = lsa
        if lsa:
            self.temperature = nn.Parameter(torch.tensor(self.head_dim ** -0.5))

    def score_scale(self) -> torch.Tensor | float:
        """What ``q @ k^T`` is multiplied by before the softmax: the learned temperature under LSA."""
        return self.temperature if self.lsa else self.head_dim ** -0.5

    def locality_mask(self, mask: torch.Tensor | None, steps: int, device: torch.device) -> torch.Tensor:
        """``mask`` (bool True = attend, or additive; None: all) without the diagonal: (.., T, T).

        A row left with no key (a lone real token) keeps ``mask``'s row, so its output stays finite.
        """
        off_diagonal = ~torch.eye(steps, dtype=torch.bool, device=device)  # (T, T)
        if mask is None:
            return off_diagonal if steps > 1 else ~off_diagonal
        if mask.dtype != torch.bool:
            return mask.masked_fill(~off_diagonal, float("-inf"))
        local = mask & off_diagonal
        return local | (mask & ~local.any(dim=-1, keepdim=True))

    def _split(self, x: torch.Tensor, parts: int) -> list[torch.Tensor]:
        batch, steps, _ = x.shape
        x = x.view(batch, steps, parts, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (parts, B, nh, T, hs)
        return list(x.unbind(0))

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of a (B, S, Dc) context: two (B, nh, S, hs)."""
        k, v = self._split(self.kv(context), 2)
        return k, v

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, is_causal: bool = False,
                context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                rope: RotaryEmbedding | None = None, positions: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D). ``mask`` from :func:`attention_mask`; ``context_kv`` for cross."""
        batch, steps, _ = x.shape
        if self.cross:
            (q,) = self._split(self.q(x), 1)
            k, v = context_kv
        else:
            q, k, v = self._split(self.qkv(x), 3)  # each (B, nh, T, hs)
            if rope is not None:
                q, k = rope(q, positions), rope(k, positions)
            if cache is not None:
                k, v = cache.update(layer, k, v)
        drop = self.dropout if self.training else 0.0
        scale = None
        if self.lsa:
            if is_causal or cache is not None:
                raise ValueError("locality self-attention (lsa) is for encoders: no causal mask, no KV cache")
            # SDPA takes a float scale: the learned temperature multiplies the queries instead
            q, scale, mask = q * self.temperature.to(q.dtype), 1.0, self.locality_mask(mask, steps, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=is_causal,
                                             scale=scale)
        out = out.transpose(1, 2).reshape(batch, steps, self.heads * self.head_dim)  # (B, T, nh * hs)
        return self.proj(out)
