"""Reading R lazy-load databases (``.rdx`` + ``.rdb``), as Debian's ``r-cran-*`` data packages
ship them, without R: the blocks are unpacked here and each object is converted by ``rdata``.
The text-generation and speech tasks read Jane Austen's novels this way."""
from __future__ import annotations

import zlib
from pathlib import Path


def read_r_lazyload(index: Path) -> dict[str, object]:
    """The objects of an R lazy-load database: ``NAME.rdx`` (index) and ``NAME.rdb`` (blocks).

    The index is a compressed serialized R list whose ``variables`` give each object's
    (offset, length) in the ``.rdb``; each block is a 4-byte big-endian uncompressed size
    followed by a zlib stream holding one serialized object. Character vectors come back as
    ``list[str]`` (NA as ""), other objects as ``rdata`` converts them.
    """
    table = _parse_r(index.read_bytes(), str(index))
    if not isinstance(table, dict) or "variables" not in table:
        raise ValueError(f"{index}: not an R lazy-load index (no 'variables' entry)")
    compressed = table.get("compressed", [True])
    if int(compressed[0]) != 1:
        raise ValueError(f"{index}: compression type {compressed[0]} is not supported (only zlib, type 1)")
    store = index.with_suffix(".rdb")
    blob = store.read_bytes()
    objects: dict[str, object] = {}
    for key, (offset, length) in table["variables"].items():
        name = str(key)
        block = blob[int(offset): int(offset) + int(length)]
        where = f"{store}: object {name!r} at byte {int(offset)}"
        try:
            raw = zlib.decompress(block[4:])
        except zlib.error as err:
            raise ValueError(f"{where}: damaged zlib block ({err})") from None
        if len(raw) != int.from_bytes(block[:4], "big"):
            raise ValueError(f"{where}: unpacked {len(raw)} bytes, its header says {int.from_bytes(block[:4], 'big')}")
        value = _parse_r(raw, where)
        if getattr(value, "dtype", None) is not None and value.dtype.kind in "UO":
            value = [item if isinstance(item, str) else "" for item in value.tolist()]
        objects[name] = value
    return objects


def _parse_r(data: bytes, where: str) -> object:
    """One serialized R object (optionally gzip/bzip2/xz-compressed) converted by ``rdata``."""
    import rdata

    try:
        return rdata.conversion.convert(rdata.parser.parse_data(data, extension=".rds"))
    except Exception as err:  # rdata raises assorted errors on damaged input; name the source instead
        raise ValueError(f"{where}: not readable as serialized R data ({type(err).__name__}: {err})") from err
