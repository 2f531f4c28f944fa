"""Malformed model folders: every one fails with ZooError or FileNotFoundError naming the damaged
file, never with another exception type and never by loading a model.

Each case copies the committed format-1 fixture (text encoder + classifier + tokenizer) and
damages one file: the weights (truncated, bad header, dtypes, NaN, keys, shapes, pickles),
config.json (encoding, JSON, structure, types per field, unknown names) or the tokenizer.
"""
from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.format1_fixture import format1_folder
from zoo.errors import ZooError

FIXTURE = format1_folder()   # the folder format-1 code saved (tests/format1_fixture.py)
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.model"


# ---- ways to damage a file -----------------------------------------------------------------
def _split(raw: bytes) -> tuple[dict, bytes]:
    """A safetensors file as (header dict, data bytes)."""
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def _joined(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def raw(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(change(path.read_bytes()))


def header(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        head, data = _split(path.read_bytes())
        change(head)
        path.write_bytes(_joined(head, data))
    return apply


def tensors(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        state = load_file(str(path))
        change(state)
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return apply


def config(change: Callable[[dict], Any]) -> Callable[[Path], None]:
    """Edit the parsed config.json (``change`` edits in place, or returns a replacement)."""
    def apply(path: Path) -> None:
        value = json.loads(path.read_text())
        result = change(value)
        path.write_text(json.dumps(value if result is None else result))
    return apply


def text(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")


def removed(path: Path) -> None:
    path.unlink()


def pickled_instead(path: Path) -> None:
    path.unlink()
    torch.save(load_file(str(FIXTURE / WEIGHTS)), path.with_name("pytorch_model.bin"))


def _dtype(name: str, dtype: str) -> Callable[[dict], None]:
    return lambda head: head[name].update(dtype=dtype)


def _set(head: dict, value: Any) -> None:
    head["backbone"]["args"].update(value)


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"a": 1}))


def _nan_at(name: str, value: float) -> Callable[[dict[str, torch.Tensor]], None]:
    return lambda state: state[name].view(-1)[0].fill_(value)


E, B, H = "backbone.embed.weight", "backbone.norm.bias", "head.fc.weight"
# case -> (file to damage, how, [the file the error must name, when another])
CASES: dict[str, tuple] = {
    # ---- model.safetensors: truncated, empty, wrong header
    "weights truncated to half": (WEIGHTS, raw(lambda b: b[: len(b) // 2])),
    "weights truncated to 9 bytes": (WEIGHTS, raw(lambda b: b[:9])),
    "weights truncated to 4 bytes": (WEIGHTS, raw(lambda b: b[:4])),
    "weights last byte cut": (WEIGHTS, raw(lambda b: b[:-1])),
    "weights empty": (WEIGHTS, text(b"")),
    "weights random bytes": (WEIGHTS, text(bytes(range(256)) * 8)),
    "header length huge": (WEIGHTS, raw(lambda b: (2 ** 60).to_bytes(8, "little") + b[8:])),
    "header length past the end": (WEIGHTS, raw(lambda b: (len(b) + 10).to_bytes(8, "little") + b[8:])),
    "header not JSON": (WEIGHTS, raw(lambda b: b[:8] + b"#" * (int.from_bytes(b[:8], "little")) + _split(b)[1])),
    "header a JSON list": (WEIGHTS, raw(lambda b: _joined([1, 2], _split(b)[1]))),  # type: ignore[arg-type]
    "header unknown dtype": (WEIGHTS, header(_dtype(H, "X99"))),
    "header offsets past the data": (WEIGHTS, header(lambda h: h[H].update(data_offsets=[0, 10 ** 6]))),
    "header offsets reversed": (WEIGHTS, header(lambda h: h[H].update(data_offsets=h[H]["data_offsets"][::-1]))),
    "header shape disagrees with bytes": (WEIGHTS, header(lambda h: h[H].update(shape=[3, 8]))),
    "header tensor without offsets": (WEIGHTS, header(lambda h: h[H].pop("data_offsets"))),
    # ---- wrong dtypes (same byte size: they read, then the check refuses them)
    "float weight as int32": (WEIGHTS, header(_dtype(H, "I32"))),
    "float weight as uint32": (WEIGHTS, header(_dtype(E, "U32"))),
    "float weights as int64 tensor": (WEIGHTS, tensors(lambda s: s.update({H: s[H].long()}))),
    "float weights as bool tensor": (WEIGHTS, tensors(lambda s: s.update({B: s[B] > 0}))),
    "float weights as uint8 tensor": (WEIGHTS, tensors(lambda s: s.update({B: s[B].to(torch.uint8)}))),
    "float weights as int16 tensor": (WEIGHTS, tensors(lambda s: s.update({E: s[E].to(torch.int16)}))),
    # ---- non-finite values
    "NaN in the embedding": (WEIGHTS, tensors(_nan_at(E, float("nan")))),
    "inf in the classifier": (WEIGHTS, tensors(_nan_at(H, float("inf")))),
    "-inf in a norm": (WEIGHTS, tensors(_nan_at(B, -float("inf")))),
    "NaN in a float16 copy": (WEIGHTS, tensors(lambda s: s.update({H: s[H].half().fill_(float("nan"))}))),
    # ---- keys and shapes
    "missing classifier bias": (WEIGHTS, tensors(lambda s: s.pop("head.fc.bias"))),
    "missing every head tensor": (WEIGHTS, tensors(lambda s: [s.pop(k) for k in list(s) if k.startswith("head.")])),
    "missing every backbone tensor": (WEIGHTS, tensors(lambda s: [s.pop(k) for k in list(s) if k.startswith("back")])),
    "no tensors at all": (WEIGHTS, tensors(lambda s: s.clear())),
    "extra head tensor": (WEIGHTS, tensors(lambda s: s.update({"head.extra": torch.zeros(2)}))),
    "extra backbone tensor": (WEIGHTS, tensors(lambda s: s.update({"backbone.stack.blocks.1.norm1.bias": s[B] + 1}))),
    "renamed tensor": (WEIGHTS, tensors(lambda s: s.update({"head.linear.weight": s.pop(H)}))),
    "classifier transposed": (WEIGHTS, tensors(lambda s: s.update({H: s[H].t()}))),
    "embedding one row short": (WEIGHTS, tensors(lambda s: s.update({E: s[E][:-1]}))),
    "norm as a scalar": (WEIGHTS, tensors(lambda s: s.update({B: s[B][0]}))),
    "classifier flattened": (WEIGHTS, tensors(lambda s: s.update({H: s[H].flatten()}))),
    # ---- pickles and other formats
    "torch.save under the safetensors name": (WEIGHTS, lambda p: torch.save(load_file(str(p)), p)),
    "raw pickle under the safetensors name": (WEIGHTS, lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=4))),
    "zip archive under the safetensors name": (WEIGHTS, _zip),
    "only a pytorch_model.bin pickle": (WEIGHTS, pickled_instead, "pytorch_model.bin"),
    "weights a directory": (WEIGHTS, directory),
    "weights missing": (WEIGHTS, removed),
    # ---- config.json: encoding and JSON
    "config empty": (CONFIG, text(b"")),
    "config not JSON": (CONFIG, text(b"format_version = 1")),
    "config truncated JSON": (CONFIG, raw(lambda b: b[: len(b) // 2])),
    "config latin-1 byte": (CONFIG, raw(lambda b: b.replace(b'"sentiment"', b'"sentim\xe9nt"'))),
    "config UTF-16": (CONFIG, raw(lambda b: b.decode().encode("utf-16"))),
    "config a JSON list": (CONFIG, text(b"[1, 2, 3]")),
    "config a JSON string": (CONFIG, text(b'"model"')),
    "config JSON null": (CONFIG, text(b"null")),
    "config a directory": (CONFIG, directory),
    "config missing": (CONFIG, removed),
    # ---- format_version
    "format_version missing": (CONFIG, config(lambda c: c.pop("format_version"))),
    "format_version a string": (CONFIG, config(lambda c: c.update(format_version="1"))),
    "format_version from the future": (CONFIG, config(lambda c: c.update(format_version=99))),
    "format_version zero": (CONFIG, config(lambda c: c.update(format_version=0))),
    "format_version fractional": (CONFIG, config(lambda c: c.update(format_version=1.5))),
    "format_version true": (CONFIG, config(lambda c: c.update(format_version=True))),
    # ---- structure and types per field
    "backbone missing": (CONFIG, config(lambda c: c.pop("backbone"))),
    "head missing": (CONFIG, config(lambda c: c.pop("head"))),
    "backbone a list": (CONFIG, config(lambda c: c.update(backbone=[c["backbone"]]))),
    "head a string": (CONFIG, config(lambda c: c.update(head="classification"))),
    "backbone name missing": (CONFIG, config(lambda c: c["backbone"].pop("name"))),
    "backbone name a number": (CONFIG, config(lambda c: c["backbone"].update(name=3))),
    "unknown backbone name": (CONFIG, config(lambda c: c["backbone"].update(name="text_encoder_huge"))),
    "unknown head name": (CONFIG, config(lambda c: c["head"].update(name="regression"))),
    "unknown timm model": (CONFIG, config(lambda c: c["backbone"].update(name="timm/not_a_model_at_all"))),
    "backbone args a list": (CONFIG, config(lambda c: c["backbone"].update(args=[8, 1]))),
    "head args a string": (CONFIG, config(lambda c: c["head"].update(args="num_classes=2"))),
    "unknown backbone argument": (CONFIG, config(lambda c: _set(c, {"width": 8}))),
    "unknown head argument": (CONFIG, config(lambda c: c["head"]["args"].update(classes=2))),
    "dim a string": (CONFIG, config(lambda c: _set(c, {"dim": "8"}))),
    "depth fractional": (CONFIG, config(lambda c: _set(c, {"depth": 1.5}))),
    "dropout a list": (CONFIG, config(lambda c: _set(c, {"dropout": [0.1]}))),
    "causal a string": (CONFIG, config(lambda c: _set(c, {"causal": "no"}))),
    "position a number": (CONFIG, config(lambda c: _set(c, {"position": 1}))),
    "num_classes a string": (CONFIG, config(lambda c: c["head"]["args"].update(num_classes="2"))),
    "num_classes an object": (CONFIG, config(lambda c: c["head"]["args"].update(num_classes={"n": 2}))),
    "task a list": (CONFIG, config(lambda c: c.update(task=["sentiment"]))),
    "preprocessing a list": (CONFIG, config(lambda c: c.update(preprocessing=[]))),
    "tokenizer a number": (CONFIG, config(lambda c: c.update(tokenizer=7))),
    "tokenizer outside the folder": (CONFIG, config(lambda c: c.update(tokenizer="../tokenizer.model"))),
    # ---- values that cannot build, or that build another shape than the weights
    "dim not divisible by heads": (CONFIG, config(lambda c: _set(c, {"dim": 9}))),
    "dim of another size": (CONFIG, config(lambda c: _set(c, {"dim": 16})), WEIGHTS),
    "vocabulary of another size": (CONFIG, config(lambda c: _set(c, {"vocab_size": 20})), WEIGHTS),
    "one more block": (CONFIG, config(lambda c: _set(c, {"depth": 2})), WEIGHTS),
    "negative vocabulary": (CONFIG, config(lambda c: _set(c, {"vocab_size": -5}))),
    "unknown norm kind": (CONFIG, config(lambda c: _set(c, {"norm": "batch"}))),
    "lm head on an encoder": (CONFIG, config(lambda c: c.update(head={"name": "lm", "args": {}}))),
    "another head's weights": (CONFIG, config(lambda c: c["head"]["args"].update(num_classes=3, labels=list("abc"))),
                               WEIGHTS),
    # ---- tokenizer.model
    "tokenizer garbage": (TOKENIZER, text(b"\x00\x01not a sentencepiece model")),
    "tokenizer truncated": (TOKENIZER, raw(lambda b: b[: len(b) // 3])),
    "tokenizer a directory": (TOKENIZER, directory),
    "tokenizer missing": (TOKENIZER, removed),
}


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_folder_fails_naming_the_file(case, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(FIXTURE, folder)
    damaged, damage, *named = CASES[case]
    damage(folder / damaged)
    with pytest.raises((ZooError, FileNotFoundError)) as caught:
        zoo.load(folder)
    message = str(caught.value)
    assert str(folder / (named[0] if named else damaged)) in message, message
    assert "\n" not in message, message
