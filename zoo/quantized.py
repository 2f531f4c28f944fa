"""Int8 models: int8 ``nn.Linear`` and ``nn.Conv2d`` layers and weight-only int8 embeddings, stored as plain tensors.

:func:`quantize` replaces, in place, every ``nn.Linear`` by an :class:`Int8Linear`, every ``nn.Conv2d``
(zero padding) by an :class:`Int8Conv2d` and every ``nn.Embedding`` by an :class:`Int8Embedding`:

- weights are symmetric int8 with one float32 scale per output row (``weight_int8`` (N, K),
  ``weight_scale`` (N,)); a Linear tied to an embedding (the ``lm`` and ``seq2seq`` output projections)
  shares that embedding's int8 table and scales, so the pair is stored once, as the float tensor was;
- the input of a Linear is quantized to int8 per row (per token) at run time (``dynamic``), or with one
  scale per layer measured on calibration batches (``static``, buffer ``input_scale``); the product is
  int8 x int8 -> int32 (``torch._int_mm``), rescaled to float, plus the float bias;
- a convolution is the same with one weight scale per output channel and one input scale per sample
  (``dynamic``) or per layer (``static``); PyTorch has no int8 convolution over plain tensors, so the
  integer sums are computed exactly in floating point (:meth:`Int8Conv2d.forward`);
- an embedding looks up its int8 rows and multiplies each by its scale (weight-only int8).

This is the recipe of torchao's ``Int8DynamicActivationInt8WeightConfig`` without its tensor subclasses:
on disk ``model.safetensors`` holds ``<module>.weight_int8`` (int8), ``<module>.weight_scale`` (float32)
and, static, ``<module>.input_scale``; ``config.json`` holds the :class:`QuantSpec` under
``quantization``. ``zoo.load`` builds the float model from the config, rebuilds the same int8 modules
(:func:`rebuild`) and loads the stored tensors into them. Norms, biases, 1-D convolutions and
convolutions with other padding modes stay float.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError

METHODS = ("dynamic", "static")
QMAX = 127               # symmetric int8: values in [-127, 127], zero exact
_TINY = 1e-12            # floor of a scale: an all-zero row or input quantizes to zeros, not NaN


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of each row of ``weight`` (N, K): (int8 (N, K), float32 scales (N,)), ``q * s ~ w``."""
    scale = weight.detach().float().abs().amax(dim=-1).clamp_min(_TINY) / QMAX    # (N,)
    values = torch.round(weight.detach().float() / scale[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return values, scale


def _kernel_fits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``torch._int_mm`` takes (M, K) x (K, N): always on the CPU; CUDA wants M > 16, K and N by 8."""
    if a.device.type == "cpu":
        return True
    return a.device.type == "cuda" and a.shape[0] > 16 and a.shape[1] % 8 == 0 and b.shape[1] % 8 == 0


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, K) int8 x (K, N) int8 -> (M, N) int32; in float64 (exact here) where the int8 kernel does not apply."""
    if _kernel_fits(a, b):
        return torch._int_mm(a, b)
    return (a.double() @ b.double()).to(torch.int32)


def quantize_input(x: torch.Tensor, input_scale: torch.Tensor | None,
                   dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer values in [-127, 127] as floats, shape of ``x``; their scale): one scale per slice over
    ``dims`` (``dynamic``: the largest magnitude / 127), or the calibrated ``input_scale`` (``static``)."""
    if input_scale is None:
        scale = x.abs().amax(dim=dims, keepdim=True).clamp_min_(_TINY).div_(QMAX)
    else:
        scale = input_scale                                                             # (): calibrated
    return torch.div(x, scale).round_().clamp_(-QMAX, QMAX), scale


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (one scale per output row) and int8 inputs (module docstring).

    Built empty (zeros) for ``zoo.load`` to fill; :meth:`from_float` quantizes a float Linear.
    """

    def __init__(self, in_features: int, out_features: int, bias: nn.Parameter | None, static: bool,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, device=device))
        self.register_buffer("input_scale", torch.ones((), device=device) if static else None)
        self.bias = bias

    @classmethod
    def from_float(cls, linear: nn.Linear, input_scale: torch.Tensor | None = None) -> Int8Linear:
        """``linear`` quantized; ``input_scale`` (a scalar) makes it static. The float bias is kept as is."""
        module = cls(linear.in_features, linear.out_features, linear.bias, input_scale is not None,
                     linear.weight.device)
        module.weight_int8, module.weight_scale = quantize_rows(linear.weight)
        if input_scale is not None:
            module.input_scale.copy_(input_scale.reshape(()))
        return module

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (N, K), for code that reads a Linear's ``weight``."""
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in-place steps after each allocation: on a CPU the new (M, N) buffers, not the int8 kernel, dominated
        rows = x.reshape(-1, self.in_features).float()                                 # (M, K)
        values, scale = quantize_input(rows, self.input_scale, (-1,))                  # scale (M, 1): per token
        out = int8_matmul(values.to(torch.int8), self.weight_int8.t()).float()         # (M, N)
        out.mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kind = "dynamic" if self.input_scale is None else "static"
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, {kind}"


class Int8Conv2d(nn.Module):
    """``nn.Conv2d`` (zero padding) with int8 weights (one scale per output channel) and int8 inputs: one
    scale per sample at run time (``dynamic``) or a calibrated one per layer (``static``).

    The convolution of the int8 values runs as a float convolution whose every partial sum is an integer
    below 2**24 in magnitude, hence exact in float32 (and rounded to the integer, in case the backend's
    algorithm is not a direct sum): the bound is ``127 * max over output channels of sum |weight_int8|``,
    checked on the weights; a layer past it is computed in float64 (exact to 2**53). Built empty for
    ``zoo.load`` to fill; :meth:`from_float` quantizes a float Conv2d.
    """

    def __init__(self, conv: nn.Conv2d, static: bool) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        self.kernel_size, self.stride, self.padding, self.dilation = (conv.kernel_size, conv.stride, conv.padding,
                                                                      conv.dilation)
        device = conv.weight.device
        self.register_buffer("weight_int8", torch.zeros(conv.weight.shape, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(conv.out_channels, device=device))
        self.register_buffer("input_scale", torch.ones((), device=device) if static else None)
        self.bias = conv.bias

    @classmethod
    def from_float(cls, conv: nn.Conv2d, input_scale: torch.Tensor | None = None) -> Int8Conv2d:
        """``conv`` quantized; ``input_scale`` (a scalar) makes it static. The float bias is kept as is."""
        module = cls(conv, input_scale is not None)
        values, module.weight_scale = quantize_rows(conv.weight.flatten(1))      # (O, I/g * kh * kw)
        module.weight_int8 = values.reshape(conv.weight.shape)
        if input_scale is not None:
            module.input_scale.copy_(input_scale.reshape(()))
        return module

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (O, I/groups, kh, kw)."""
        return self.weight_int8.float() * self.weight_scale[:, None, None, None]

    def exact_in_float32(self) -> bool:
        """Whether every sum of int8 products this layer computes stays below 2**24 in magnitude (worked out
        again only when the weights change: a load writes them in place)."""
        weights = self.weight_int8
        key = (weights.data_ptr(), weights._version)
        if getattr(self, "_exact_key", None) != key:
            self._exact_key = key
            self._exact = QMAX * int(weights.flatten(1).abs().sum(dim=1, dtype=torch.int64).max()) < 2 ** 24
        return self._exact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, scale = quantize_input(x.float(), self.input_scale, (1, 2, 3))        # scale (B, 1, 1, 1)
        kind = torch.float32 if self.exact_in_float32() else torch.float64
        sums = F.conv2d(values.to(kind), self.weight_int8.to(kind), None, self.stride, self.padding, self.dilation,
                        self.groups).round_().float()                                   # (B, O, H', W') integers
        out = sums * (scale * self.weight_scale[:, None, None])
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        kind = "dynamic" if self.input_scale is None else "static"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, bias={self.bias is not None}, {kind}")


class Int8Embedding(nn.Module):
    """``nn.Embedding`` with int8 rows, one float32 scale each (weight-only int8)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8,
                                                        device=device))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, device=device))

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> Int8Embedding:
        """``embedding`` quantized row by row."""
        module = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.weight.device)
        module.weight_int8, module.weight_scale = quantize_rows(embedding.weight)
        return module

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized table (V, D), for code that reads an embedding's ``weight`` (DETR queries)."""
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight_int8)                       # (..., D) int8
        return rows.float() * self.weight_scale[ids].unsqueeze(-1)      # (..., D)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


@dataclass(frozen=True)
class QuantSpec:
    """What :func:`quantize` replaced: the ``method``, the module paths of the Linears and embeddings,
    ``tied``: Linear path -> the embedding path whose int8 table it shares, and the paths of the
    convolutions (absent from checkpoints quantized before convolutions were: none)."""

    method: str
    linear: tuple[str, ...]
    embedding: tuple[str, ...]
    tied: dict[str, str] = field(default_factory=dict)
    conv: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, value: Any, where: str) -> QuantSpec:
        """The spec stored as JSON at ``where`` (a file and field, for messages), checked."""
        names = ("method", "linear", "embedding", "tied")
        if not isinstance(value, dict) or not set(names) <= set(value) <= {*names, "conv"}:
            raise ZooError(f"{where}: expected an object with {', '.join(names)} (and conv); quantize the model again")
        if value["method"] not in METHODS:
            raise ZooError(f"{where}: field 'method' is {value['method']!r}, expected one of {', '.join(METHODS)}")
        value = {"conv": [], **value}
        for name in ("linear", "embedding", "conv"):
            if not isinstance(value[name], list) or not all(isinstance(n, str) for n in value[name]):
                raise ZooError(f"{where}: field {name!r} must list module names; quantize the model again")
        tied = value["tied"]
        if not isinstance(tied, dict) or any(k not in value["linear"] or v not in value["embedding"]
                                             for k, v in tied.items()):
            raise ZooError(f"{where}: field 'tied' must map listed linears to listed embeddings; "
                           f"quantize the model again")
        return cls(value["method"], tuple(value["linear"]), tuple(value["embedding"]), dict(tied), tuple(value["conv"]))

    def to_config(self) -> dict[str, Any]:
        """JSON-able form (what ``config.json`` stores under ``quantization``)."""
        return {"method": self.method, "linear": list(self.linear), "embedding": list(self.embedding),
                "tied": dict(self.tied), "conv": list(self.conv)}


def _targets(model: nn.Module) -> tuple[dict[str, nn.Linear], dict[str, nn.Embedding], dict[str, nn.Conv2d]]:
    """The model's Linears (not those ``nn.MultiheadAttention`` reads the weights of), embeddings and plain
    zero-padded Conv2d layers (subclasses, e.g. timm's ``Conv2dSame``, pad in their own forward: left float)."""
    inside_mha = {f"{name}.{child}".lstrip(".") for name, module in model.named_modules()
                  if isinstance(module, nn.MultiheadAttention) for child, _ in module.named_children()}
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in inside_mha}
    embeddings = {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    convs = {n: m for n, m in model.named_modules() if type(m) is nn.Conv2d and m.padding_mode == "zeros"}
    return linears, embeddings, convs


def _input_scales(model: nn.Module, linears: dict[str, nn.Module],
                  batches: Iterable[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Per layer of ``linears`` (Linears and convolutions), the largest absolute input over ``batches``
    run through ``model`` (eval, no grad) / 127."""
    peaks = {name: torch.zeros(()) for name in linears}

    def recorder(name: str):
        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            peaks[name] = torch.maximum(peaks[name], args[0].detach().abs().amax().float().cpu())
        return record

    hooks = [linear.register_forward_pre_hook(recorder(name)) for name, linear in linears.items()]
    seen = 0
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(batch)
                seen += 1
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise ZooError("static quantization got no calibration batch; give a calibration set with samples")
    return {name: peak.clamp_min(_TINY) / QMAX for name, peak in peaks.items()}


def _swap(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` at every path of ``model`` that holds ``old`` (a shared module has several: translation's
    head and backbone share one token embedding)."""
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if module is old:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, new)


def _install(model: nn.Module, spec: QuantSpec, scales: dict[str, torch.Tensor] | None) -> None:
    """Replace the spec's modules: quantized from their float weights when ``scales`` (possibly empty,
    dynamic) is given, else empty int8 modules of the same shapes for a load to fill."""
    linears, embeddings, convs = _targets(model)
    missing = [f"{n!r} is no Linear" for n in spec.linear if n not in linears]
    missing += [f"{n!r} is no embedding" for n in spec.embedding if n not in embeddings]
    missing += [f"{n!r} is no Conv2d" for n in spec.conv if n not in convs]
    if missing:
        raise ZooError(f"quantized module {missing[0]} of this model; quantize the model again")
    built: dict[str, Int8Embedding] = {}
    for name in spec.embedding:
        float_module = embeddings[name]
        built[name] = (Int8Embedding.from_float(float_module) if scales is not None else
                       Int8Embedding(float_module.num_embeddings, float_module.embedding_dim,
                                     float_module.weight.device))
        _swap(model, float_module, built[name])
    static = spec.method == "static"
    for name in spec.linear:
        linear = linears[name]
        if scales is not None and name not in spec.tied:
            module = Int8Linear.from_float(linear, scales.get(name))
        else:
            module = Int8Linear(linear.in_features, linear.out_features, linear.bias, static, linear.weight.device)
            if scales is not None and static:
                module.input_scale.copy_(scales[name].reshape(()))
        if name in spec.tied:
            table = built[spec.tied[name]]
            module.weight_int8, module.weight_scale = table.weight_int8, table.weight_scale   # one tensor, saved once
        _swap(model, linear, module)
    for name in spec.conv:
        conv = convs[name]
        if scales is not None:
            module = Int8Conv2d.from_float(conv, scales.get(name))
        else:
            module = Int8Conv2d(conv, static)
        _swap(model, conv, module)


def quantize(model: nn.Module, method: str = "dynamic",
             calibration: Iterable[dict[str, Any]] | None = None) -> QuantSpec:
    """Quantize ``model`` (a float ZooModel) in place to int8 and record the spec as ``model.quantization``.

    ``method``: ``dynamic`` (inputs of each Linear quantized per token, of each Conv2d per sample, at run
    time) or ``static`` (one input scale per layer, the largest absolute input over the ``calibration``
    batches, which the model is run on first). Embeddings are weight-only int8 either way.

    >>> spec = zoo.quantize(model)            # then model.save(folder); zoo.load(folder) is int8 again
    """
    if method not in METHODS:
        raise ZooError(f"quantization method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "static" and calibration is None:
        raise ZooError("static quantization needs calibration batches (--calibration SPEC); or use dynamic")
    if getattr(model, "quantization", None) is not None:
        raise ZooError("this model is int8 already; quantize the float checkpoint")
    if getattr(model, "lora", None) is not None:
        raise ZooError("this model has LoRA adapters; merge them first (zoo merge-lora), then quantize")
    linears, embeddings, convs = _targets(model)
    if not linears and not embeddings and not convs:
        raise ZooError("this model has no Linear, Conv2d or embedding layer to quantize")
    tables = {id(e.weight): name for name, e in embeddings.items()}
    tied = {name: tables[id(linear.weight)] for name, linear in linears.items() if id(linear.weight) in tables}
    scales = _input_scales(model, {**linears, **convs}, calibration) if method == "static" else {}
    spec = QuantSpec(method, tuple(linears), tuple(embeddings), tied, tuple(convs))
    _install(model, spec, scales)
    model.quantization = spec
    return spec


def rebuild(model: nn.Module, spec: QuantSpec) -> None:
    """Give a freshly built float model the int8 modules of ``spec`` (empty: ``zoo.load`` fills them)."""
    _install(model, spec, None)
    model.quantization = spec
