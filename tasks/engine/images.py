"""Image files decoded one way for every task (classification, detection, their predict commands).

:func:`load_image` gives an RGB PIL image: EXIF orientation applied, transparency composited
onto white, palette / gray+alpha / CMYK / 16-bit / float modes converted by :func:`to_rgb`.
:func:`probe_image` checks a file cheaply (header and chunk checksums, no decoding) and
returns the size :func:`load_image` will give. Both raise ``FileNotFoundError`` for a missing
file and :class:`~zoo.errors.ZooError` naming the file for a damaged one, a non-image, or one
over Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, never changed here).
:func:`stored_transform` is the transform config an image model keeps in its ``preprocessing``.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.functional import to_pil_image

from zoo.errors import ZooError

BACKGROUND = (255, 255, 255)  # what transparent pixels become
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_SWAPPED = (5, 6, 7, 8)  # EXIF orientations that turn the stored image a quarter turn
_ORIENTATION = 0x0112


def load_image(path: str | Path) -> Image.Image:
    """Decode one image file as RGB (EXIF rotation applied, transparency on white, modes as :func:`to_rgb`)."""
    with decoding(path), Image.open(path) as image:
        return to_rgb(ImageOps.exif_transpose(image))


def stored_transform(model: torch.nn.Module, task: str) -> dict[str, Any]:
    """The image transform config ``model`` was trained with (``preprocessing["transform"]``); a ZooError
    naming `zoo train TASK` when the model stores none (it was not built by an image task)."""
    config = getattr(model, "preprocessing", {}).get("transform")
    if config is None:
        raise ZooError(f"this model stores no preprocessing['transform']; {task} models come from `zoo train {task}`")
    return config


def as_image(item: str | Path | Image.Image | np.ndarray | torch.Tensor, source: str = "image") -> Image.Image:
    """An image given by path or in memory as RGB PIL: a file (:func:`load_image`), a PIL image
    (:func:`to_rgb`), an (H, W, 3) or (H, W) uint8 array, or a (3, H, W) or (1, H, W) tensor (uint8, or
    float in [0, 1], rounded to the nearest of 256 levels). Another shape or type raises a ZooError naming
    ``source``."""
    if isinstance(item, (str, Path)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, torch.Tensor):
        if item.ndim != 3 or item.shape[0] not in (1, 3) or not (item.dtype == torch.uint8 or item.is_floating_point()):
            raise ZooError(f"{source}: a {item.dtype} tensor of shape {tuple(item.shape)}; pass (3, H, W) or "
                           f"(1, H, W), uint8 or float in [0, 1]")
        if item.is_floating_point():
            item = (item.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        return to_rgb(to_pil_image(item.cpu()))
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3)):
            raise ZooError(f"{source}: a {item.dtype} array of shape {item.shape}; pass (H, W, 3) or (H, W) uint8")
        return to_rgb(Image.fromarray(item.squeeze(2) if item.ndim == 3 and item.shape[2] == 1 else item))
    raise ZooError(f"{source} is a {type(item).__name__}; pass an image file path, a PIL image, an (H, W, 3) "
                   f"uint8 array or a (3, H, W) tensor")


def read_image(item: str | Path | Image.Image | np.ndarray | torch.Tensor, source: str = "image") -> torch.Tensor:
    """An image (a file, decoded as in training, or one in memory: :func:`as_image`) as
    uint8 (3, H, W) RGB.

    A missing file raises ``FileNotFoundError``; a damaged one, a non-image, a decompression bomb or an
    array of another shape raises :class:`~zoo.errors.ZooError`, each naming the file or ``source``.
    """
    pixels = np.array(as_image(item, source))  # (H, W, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (3, H, W)


def image_stem(item: str | Path | Image.Image | np.ndarray | torch.Tensor) -> str:
    """The file name without its suffix of an image given by path; ``"image"`` for one given in memory."""
    return Path(item).stem if isinstance(item, (str, Path)) else "image"


def probe_image(path: str | Path) -> tuple[int, int]:
    """(width, height) that :func:`load_image` gives (EXIF quarter turns swap them), without decoding pixels."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise ZooError(f"{path}: empty file")
    with decoding(path):
        with Image.open(path) as image:
            width, height = image.size
            image.verify()
        with Image.open(path) as image:  # verify() leaves the image unusable; the EXIF needs a fresh open
            turned = _orientation(image) in _SWAPPED
    return (height, width) if turned else (width, height)


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation of an opened image, read without decoding its pixels.

    A PNG's EXIF is seen only when its eXIf chunk comes before the image data, as the PNG
    specification asks (Pillow's ``getexif`` would decode the whole image to look further).
    """
    if image.format == "PNG":
        if "exif" not in image.info:
            return None
        exif = Image.Exif()
        exif.load(image.info["exif"])
        return exif.get(_ORIENTATION)
    return image.getexif().get(_ORIENTATION)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB.

    Transparent pixels are composited onto white. 16-bit gray (``I;16``) is scaled by
    255/65535; 32-bit integer gray (``I``) is taken as 8-bit when every value is at most 255,
    else as 16-bit; float gray (``F``) in [0, 1] is scaled by 255, other floats are clipped
    to 0..255 (NaN becomes 0). Other modes (palette, 1-bit, CMYK, YCbCr) use Pillow's conversion.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT or image.mode in ("I", "F"):
        return Image.fromarray(_gray_to_bytes(image), mode="L").convert("RGB")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _gray_to_bytes(image: Image.Image) -> np.ndarray:
    """A high-depth gray image (``I;16*``, ``I`` or ``F``) as uint8 (H, W), scaled as :func:`to_rgb` says."""
    values = np.asarray(image).astype(np.float64)  # (H, W)
    if image.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
    elif image.mode in _SIXTEEN_BIT or values.max(initial=0) > 255:
        values = values * (255.0 / 65535.0)
    return np.round(np.clip(values, 0, 255)).astype(np.uint8)


@contextmanager
def decoding(path: str | Path) -> Iterator[None]:
    """Turn what Pillow raises on a bad file into an error naming the file.

    Images above ``Image.MAX_IMAGE_PIXELS`` (Pillow's warning threshold) are refused too;
    the limit itself is never changed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ZooError(f"{path}: is a folder, not an image file") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ZooError(f"{path}: refused as a possible decompression bomb ({err})") from None
        except ZooError:
            raise
        except Exception as err:  # Pillow's plugins raise many types on malformed files
            raise ZooError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None


IMAGE_ERRORS = (OSError, ValueError)   # what the shared decoder raises on missing or broken files


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a usable image (:func:`probe_image`'s error), or None."""
    try:
        probe_image(path)
    except IMAGE_ERRORS as err:
        return str(err)
    return None


class SkipsUndecodable:
    """Mixin of an image dataset whose ``records`` have a ``path``: :meth:`decoded` reads the image at an
    index, or when it cannot be decoded warns once, counts it in ``skipped`` and takes the next one.

    The dataset sets ``records``, ``source``, ``skipped`` and ``_undecodable`` (a set); it may override
    :meth:`_read_image` (to cache, say)."""

    records: list[Any]
    source: str
    skipped: int
    _undecodable: set[int]

    def _read_image(self, position: int) -> torch.Tensor:
        return read_image(self.records[position].path)     # (3, H, W) uint8

    def decoded(self, index: int) -> tuple[int, torch.Tensor]:
        """(position, image) of the first decodable record from ``index`` on (wrapping around)."""
        if not -len(self.records) <= index < len(self.records):
            raise IndexError(f"{self.source}: index {index} out of range for {len(self.records)} images")
        for step in range(len(self.records)):
            position = (index + step) % len(self.records)
            if position in self._undecodable:
                continue
            try:
                return position, self._read_image(position)
            except IMAGE_ERRORS as err:
                self._undecodable.add(position)
                self.skipped += 1
                warnings.warn(f"{self.source}: skipped an image that cannot be decoded: {err}", stacklevel=3)
        raise ZooError(f"{self.source}: none of its {len(self.records)} images can be decoded")

