"""Named pretrained weights: ``pretrained="wordllama"`` resolves to prepared local files with a model card.

A name is a folder ``$ZOO_DATA/weights/NAME/`` holding the files and ``card.json`` (source,
licence, sha256 of each file, architecture, what it was trained on, measured results). Built-in
entries are prepared by ``zoo weights prepare NAME`` (``make weights``), the only code besides
data preparation that fetches anything; a folder a user puts there with a card of the same
layout is listed and loaded too. Loading checks every file against its sha256.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from zoo.checkpoint import read_weights
from zoo.errors import ZooError
from zoo.storage import atomic_folder, data_root
from zoo.tokenizer import HF_TOKENIZER_FILE, HFTokenizer

CARD = "card.json"
TOKEN_EMBEDDING = "token_embedding"       # the one architecture kind cards describe now
EMBEDDING_FILE = "embedding.safetensors"
WORDLLAMA = "wordllama==0.4.0.post1"
_WORDLLAMA_FILES = {EMBEDDING_FILE: "wordllama/weights/l2_supercat_256.safetensors",
                    HF_TOKENIZER_FILE: "wordllama/tokenizers/l2_supercat_tokenizer_config.json",
                    "LICENSE": "wordllama-0.4.0.post1.dist-info/licenses/LICENSE",
                    "RESULTS.md": "wordllama/RESULTS.md"}


@dataclass(frozen=True)
class Entry:
    """A built-in catalog entry: ``prepare(folder)`` writes its files and returns its card (no sha256 yet)."""

    name: str
    summary: str
    prepare: Callable[[Path], dict[str, Any]]


def weights_root() -> Path:
    """Where named weights live: ``$ZOO_DATA/weights``."""
    return data_root() / "weights"


def prepare_command(name: str) -> str:
    """The command that prepares the built-in entry ``name``."""
    return f"zoo weights prepare {name}"


def download_wheel(requirement: str, folder: Path) -> Path:
    """``pip download`` the wheel of ``requirement`` (no dependencies) into ``folder``; its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--dest", str(folder), requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        reason = " ".join((result.stderr or result.stdout).split())[-300:]
        raise ZooError(f"`{' '.join(command[2:])}` failed ({reason}); check the network or the package index")
    return wheels[0]


def _prepare_wordllama(folder: Path) -> dict[str, Any]:
    """WordLlama's 256-wide token embedding and its tokenizer, from the PyPI wheel."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(WORDLLAMA, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            for ours, theirs in _WORDLLAMA_FILES.items():
                if theirs not in names:
                    raise ZooError(f"{wheel.name} has no {theirs}; the wheel's layout changed, update "
                                   f"zoo/pretrained/catalog.py")
                (folder / ours).write_bytes(archive.read(theirs))
    table = embedding_table(read_weights(folder / EMBEDDING_FILE), folder / EMBEDDING_FILE)
    HFTokenizer.load(folder / HF_TOKENIZER_FILE)   # refuses a tokenizer without its special tokens
    return {
        "name": "wordllama",
        "source": f"PyPI wheel {WORDLLAMA} (https://pypi.org/project/wordllama/), files "
                  + ", ".join(f"{theirs} -> {ours}" for ours, theirs in _WORDLLAMA_FILES.items()),
        "licence": "MIT (Copyright (c) 2024 Lee Miller), see LICENSE",
        "architecture": {"kind": TOKEN_EMBEDDING, "file": EMBEDDING_FILE, "tensor": "embedding.weight",
                         "vocab_size": int(table.shape[0]), "dim": int(table.shape[1]),
                         "tokenizer": HF_TOKENIZER_FILE},
        "trained_on": "token embeddings distilled (\"supercat\": concatenated, then Matryoshka-reduced to 256) "
                      "from the embedding tables of Llama-2-family models (Llama 2 70B and others sharing its "
                      "32,000-token tokenizer), trained on sentence-similarity data; see the wordllama project",
        "results": {"upstream": "MTEB scores as reported by the wordllama authors: RESULTS.md",
                    "zoo": "none measured yet"},
    }


BUILTIN = {"wordllama": Entry("wordllama", "WordLlama l2_supercat: 32,000 token embeddings x 256 + tokenizer",
                              _prepare_wordllama)}


def embedding_table(tensors: dict[str, Any], path: Path) -> Any:
    """The single 2-D tensor of an embedding file."""
    if len(tensors) != 1 or next(iter(tensors.values())).dim() != 2:
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        raise ZooError(f"{path}: expected one 2-D embedding table, found {shapes}")
    return next(iter(tensors.values()))


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_builtin(name: str) -> None:
    """Refuse a name that is no built-in entry, listing them."""
    if name not in BUILTIN:
        from difflib import get_close_matches

        close = get_close_matches(name, list(BUILTIN), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ZooError(f"no built-in pretrained weights {name!r} (built-in: {', '.join(BUILTIN)}){hint}")


def prepare(name: str, force: bool = False) -> Path:
    """Fetch and write the built-in entry ``name`` (unless prepared, or ``force``); its folder."""
    check_builtin(name)
    final = weights_root() / name
    if (final / CARD).is_file() and not force:
        return final
    with atomic_folder(final) as tmp:
        card = BUILTIN[name].prepare(tmp)
        card["files"] = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return final


def is_name(source: object) -> bool:
    """Whether ``source`` names catalog weights (a built-in name, or a folder with a card under the root)."""
    if not isinstance(source, str) or not source or "/" in source or source in (".", ".."):
        return False
    return source in BUILTIN or (weights_root() / source / CARD).is_file()


def resolve(name: str) -> tuple[Path, dict[str, Any]]:
    """The folder and card of catalog weights ``name``, every file checked against its sha256."""
    folder = weights_root() / name
    card_path = folder / CARD
    if not card_path.is_file():
        raise FileNotFoundError(f"pretrained weights {name!r} are not prepared in {folder}; run "
                                f"`{prepare_command(name)}` (or `make weights`) first")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"{card_path}: not a JSON model card ({err}); run `{prepare_command(name)} --force`") from None
    files = card.get("files") if isinstance(card, dict) else None
    if not isinstance(files, dict) or not isinstance(card.get("architecture"), dict):
        raise ZooError(f"{card_path}: a model card needs 'files' (name -> sha256) and 'architecture' objects")
    for file, digest in files.items():
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(f"{path} (listed in {card_path}) is missing; run `{prepare_command(name)} --force`")
        if sha256(path) != digest:
            raise ZooError(f"{path}: sha256 differs from {card_path}'s; the file changed, run "
                           f"`{prepare_command(name)} --force`")
    return folder, card


def listing() -> list[tuple[str, str]]:
    """(name, description) of every built-in entry and every card under the root, for ``zoo list weights``."""
    root = weights_root()
    cards = root.glob(f"*/{CARD}") if root.is_dir() else []
    prepared = {p.parent.name for p in cards if not p.parent.name.startswith(".")}   # not half-written ones
    rows = []
    for name in sorted(set(BUILTIN) | prepared):
        if name in prepared:
            card = json.loads((root / name / CARD).read_text(encoding="utf-8"))
            arch = card.get("architecture", {})
            shape = f"{arch.get('vocab_size')} x {arch.get('dim')}" if arch.get("kind") == TOKEN_EMBEDDING else ""
            rows.append((name, f"prepared  {arch.get('kind', '?')} {shape}  licence={card.get('licence', '?')}"))
        else:
            rows.append((name, f"not prepared ({BUILTIN[name].summary}): `{prepare_command(name)}`"))
    return rows
