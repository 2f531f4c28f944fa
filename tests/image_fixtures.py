"""Image files in awkward modes, each with the RGB pixels a correct decoder gives (derived here by hand).

Shared by the image classification, detection and fuzz tests, which all read images through
the one decoder (tasks/engine/images.py).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

WHITE = 255


def _gray(values: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3): gray repeated in R, G and B."""
    return np.repeat(values[..., None], 3, axis=2)


def sixteen_bit_png(path: Path) -> tuple[Path, np.ndarray]:
    """16-bit gray: 0, 5000, 40000, 65535 scale by 255/65535 (not clipped at 255)."""
    values = np.array([[0, 5000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    return path, _gray(np.round(values * (255 / 65535)).astype(np.uint8))


def sixteen_bit_tiff(path: Path) -> tuple[Path, np.ndarray]:
    values = np.array([[300, 1000, 20000]], dtype=np.uint16)
    Image.fromarray(values).save(path, format="TIFF")
    return path, _gray(np.round(values * (255 / 65535)).astype(np.uint8))


def float_tiff(path: Path) -> tuple[Path, np.ndarray]:
    """Float gray in [0, 1] scales by 255."""
    values = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    Image.fromarray(values, mode="F").save(path, format="TIFF")
    return path, _gray(np.round(values * 255).astype(np.uint8))


def rgba_png(path: Path) -> tuple[Path, np.ndarray]:
    """A clear pixel is white; an opaque one keeps its colour; half-clear red is pink."""
    pixels = np.array([[[0, 0, 0, 0], [10, 20, 30, 255], [255, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(pixels, mode="RGBA").save(path)
    half = round(255 * 128 / 255 + WHITE * (1 - 128 / 255))  # red over white
    pink = round(WHITE * (1 - 128 / 255))
    return path, np.array([[[WHITE] * 3, [10, 20, 30], [half, pink, pink]]], dtype=np.uint8)


def gray_alpha_png(path: Path) -> tuple[Path, np.ndarray]:
    pixels = np.array([[[0, 0], [90, 255]]], dtype=np.uint8)
    Image.fromarray(pixels, mode="LA").save(path)
    return path, np.array([[[WHITE] * 3, [90] * 3]], dtype=np.uint8)


def palette_png(path: Path) -> tuple[Path, np.ndarray]:
    """Palette index 1 is transparent (white); index 0 is pure green."""
    image = Image.fromarray(np.array([[0, 1, 0]], dtype=np.uint8), mode="P")
    image.putpalette([0, 255, 0, 9, 9, 9] + [0] * 762)
    image.save(path, transparency=1)
    return path, np.array([[[0, 255, 0], [WHITE] * 3, [0, 255, 0]]], dtype=np.uint8)


def cmyk_tiff(path: Path) -> tuple[Path, np.ndarray]:
    """No ink is white; full cyan ink is (0, 255, 255)."""
    pixels = np.array([[[0, 0, 0, 0], [255, 0, 0, 0]]], dtype=np.uint8)
    Image.fromarray(pixels, mode="CMYK").save(path, format="TIFF")
    return path, np.array([[[WHITE] * 3, [0, 255, 255]]], dtype=np.uint8)


def exif_rotated_png(path: Path) -> tuple[Path, np.ndarray]:
    """EXIF orientation 6: the stored 2x3 image is shown turned 90 degrees clockwise (3 wide, 2 high -> 2x3)."""
    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10  # (H=2, W=3, 3)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    return path, np.rot90(stored, k=-1)  # (3, 2, 3): clockwise


TRICKY: dict[str, tuple[str, Callable[[Path], tuple[Path, np.ndarray]]]] = {
    "16-bit PNG": ("i16.png", sixteen_bit_png),
    "16-bit TIFF": ("i16.tif", sixteen_bit_tiff),
    "float TIFF": ("f.tif", float_tiff),
    "RGBA": ("rgba.png", rgba_png),
    "LA": ("la.png", gray_alpha_png),
    "palette+transparency": ("p.png", palette_png),
    "CMYK": ("cmyk.tif", cmyk_tiff),
    "EXIF orientation": ("exif.png", exif_rotated_png),
}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A PNG whose header claims side x side pixels (900 M by default): a decompression bomb."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b""))
    return path
