"""Image classification formats: adapters of the layouts people have, each a :class:`Format`.

- ``imagefolder:DIR``: one sub-folder per class (sorted; numerically when every name is a
  number), images anywhere below it. Symlinks are followed, but a folder is walked and a
  file read only once (a link loop or a link into another class is not read again).
- ``csv:FILE[?path=COL&label=COL&classes=a,b,c]``: columns ``path,label``; paths are
  relative to the CSV; ``classes`` fixes the class list and its order (else: the sorted labels).
- ``cifar10:DIR`` / ``cifar100:DIR``: the python-pickle folder layout (DIR holds, or is,
  ``cifar-10-batches-py`` / ``cifar-100-python``), read by torchvision with ``download=False``.
  torchvision only unpickles files matching the published checksums (a pickle can run code).
- :func:`from_arrays` for the Python API.

For imagefolder and csv the whole source is scanned and :func:`~tasks.engine.data.hash_split`
gives "all" or a 90/5/5 "train"/"validation"/"test" by a seeded hash of each image's path inside
the source. For CIFAR folders, "train"/"validation" split the official training batches 95/5 by a
hash of each image's pixels, and "test" and "all" are the official test batch (what `zoo eval` reports).

Every dataset returns ``{"image": PIL RGB image, "label": int, "path": str}`` (untransformed)
and has ``classes``, ``source`` and ``skipped``. Damaged, empty or non-image files in a folder
or CSV are skipped with a warning naming them and counted in ``skipped``; images larger than
Pillow's ``MAX_IMAGE_PIXELS`` are refused as possible decompression bombs. Files are decoded
by :mod:`tasks.engine.images`, the decoder detection uses too.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from tasks.engine.data import SPLIT_NAMES, TWO_WAY, DataSpec, file_key, hash_split
from tasks.engine.images import image_problem, load_image, to_rgb
from tasks.engine.records import nonempty, table_rows, text_field, warn_skipped
from tasks.engine.sets import Format
from zoo.errors import ZooError


class LabelledImages(Dataset):
    """Base of the image datasets: ``labels`` (N,) int64 indexing ``classes``; ``source``; ``skipped``."""

    def __init__(self, labels: np.ndarray, classes: list[str], source: str, skipped: int = 0) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,)
        self.classes = list(classes)
        self.source = source
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source}: {len(self)} images, {len(self.classes)} classes)"


class ImageFiles(LabelledImages):
    """Images on disk, decoded on access.

    A file that fails to decode here (damage the cheap scan could not see, e.g. a truncated
    JPEG) is reported with a warning, counted in ``skipped`` (per process: DataLoader workers
    count their own) and replaced by the next readable sample, so batches keep their size.
    """

    def __init__(self, paths: list[str], labels: np.ndarray, classes: list[str], source: str,
                 skipped: int = 0) -> None:
        super().__init__(labels, classes, source, skipped)
        self.paths = paths

    def __getitem__(self, index: int) -> dict:
        for offset in range(len(self.paths)):
            i = (index + offset) % len(self.paths)
            try:
                image = load_image(self.paths[i])
            except (ValueError, FileNotFoundError) as err:
                self.skipped += 1
                warnings.warn(f"{self.source}: skipped {err}", stacklevel=2)
                continue
            return {"image": image, "label": int(self.labels[i]), "path": self.paths[i]}
        raise ZooError(f"{self.source}: none of its {len(self.paths)} images can be decoded")

    def take(self, indices: Sequence[int]) -> ImageFiles:
        """The samples at ``indices`` (same classes, source and skipped count)."""
        return ImageFiles([self.paths[i] for i in indices], self.labels[list(indices)], self.classes,
                          self.source, self.skipped)


class ImageArrays(LabelledImages):
    """Images held in memory: ``images`` (N, H, W) or (N, H, W, C) uint8, C in 1, 3, 4."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], source: str,
                 skipped: int = 0) -> None:
        super().__init__(labels, classes, source, skipped)
        self.images = images

    def __getitem__(self, index: int) -> dict:
        array = self.images[index]  # (H, W) or (H, W, C)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return {"image": to_rgb(Image.fromarray(array)), "label": int(self.labels[index]),
                "path": f"{self.source}[{index}]"}


def _split_files(whole: ImageFiles, root: Path, spec: DataSpec, split: str) -> ImageFiles:
    """``split`` of a scanned folder or CSV, by a seeded hash of each image's path inside ``root``."""
    keys = [file_key(p, root) for p in whole.paths]
    return whole.take(hash_split(list(range(len(whole))), split, key=keys.__getitem__, source=f"--data {spec}"))


def _imagefolder(spec: DataSpec, split: str) -> ImageFiles:
    folder = Path(spec.path).expanduser()
    return _split_files(read_imagefolder(folder, f"{spec} [{split}]"), folder, spec, split)


def _csv(spec: DataSpec, split: str) -> ImageFiles:
    file = Path(spec.path).expanduser()
    return _split_files(read_csv(file, f"{spec} [{split}]", **spec.options), file.parent, spec, split)


def from_arrays(images: np.ndarray, labels: Sequence[int] | np.ndarray, classes: Sequence[str]) -> ImageArrays:
    """A dataset over in-memory images: ``images`` (N, H, W) or (N, H, W, C) uint8 with C in 1, 3, 4;
    ``labels`` (N,) integers indexing ``classes``. Raises ``ValueError`` naming the bad field or index."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ZooError(f"from_arrays: images must be uint8 in 0-255, got {images.dtype}")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
        raise ZooError(f"from_arrays: images must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4; "
                         f"got shape {images.shape}")
    classes = [str(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ZooError(f"from_arrays: classes must be non-empty and unique, got {classes}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or (labels.size and labels.dtype.kind not in "iu"):
        raise ZooError(f"from_arrays: labels must be {len(images)} integers, got {labels.dtype} {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
    if bad.size:
        raise ZooError(f"from_arrays: labels[{bad[0]}] = {labels[bad[0]]} is not a class index "
                         f"0..{len(classes) - 1}")
    return ImageArrays(images, labels, classes, "arrays")


def align_classes(dataset: LabelledImages, classes: Sequence[str]) -> LabelledImages:
    """Relabel ``dataset`` in place to index ``classes`` (e.g. a checkpoint's), matching by name.

    Needed whenever a model meets data it was not built from: a folder missing one class
    would otherwise shift every later label. Raises naming the classes the model lacks.
    """
    classes = list(classes)
    unknown = [name for name in dataset.classes if name not in classes]
    if unknown:
        raise ValueError(f"{dataset.source}: classes {unknown} are not among the model's classes {classes}")
    mapping = np.array([classes.index(name) for name in dataset.classes], dtype=np.int64)
    dataset.labels = mapping[dataset.labels]
    dataset.classes = classes
    return dataset


def read_imagefolder(folder: Path, source: str) -> ImageFiles:
    """Every readable image below ``folder/<class>/``; classes are the sorted sub-folder names."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{source}: {folder} is not a folder")
    classes = _sorted_names([entry.name for entry in os.scandir(folder)
                             if entry.is_dir() and not entry.name.startswith(".")])
    if not classes:
        raise ZooError(f"{source}: {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    seen_folders: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    listed = [("", path, name) for name in classes for path in _files_below(folder / name, seen_folders, seen_files)]
    return _readable(listed, classes, source, f"no readable image in the class folders of {folder}")


def read_csv(file: Path, source: str, path: str = "path", label: str = "label", classes: str = "") -> ImageFiles:
    """The images listed in a CSV with columns ``path`` and ``label`` (names configurable).

    A missing column, empty field, missing image file or label outside ``classes`` (a
    comma-separated list, when given) raises naming the CSV and line; a damaged image is
    skipped with a warning naming both.
    """
    fixed = [name.strip() for name in classes.split(",") if name.strip()]
    listed = []
    for where, row in table_rows(file, (path, label), hint="; name them with ?path=COLUMN&label=COLUMN", one_line=True):
        value, name = text_field(row, path, where).strip(), text_field(row, label, where).strip()
        if fixed and name not in fixed:
            raise ZooError(f"{where}: unknown label {name!r}; expected one of {fixed}")
        image = file.parent / value
        if not image.is_file():
            raise FileNotFoundError(f"{where}: image file {image} does not exist")
        listed.append((f"{where}: ", str(image), name))
    return _readable(listed, fixed, source, f"{file} lists no readable image")


def _readable(listed: list[tuple[str, str, str]], classes: list[str], source: str, none: str) -> ImageFiles:
    """The ``(where, path, class name)`` listed whose image passes the cheap check; the others are skipped
    (one warning names them, each after its ``where``) and counted. ``classes`` empty: the sorted names kept."""
    checked = [(where, path, name, image_problem(path)) for where, path, name in listed]
    problems = [where + problem for where, _, _, problem in checked if problem]
    kept = [(path, name) for _, path, name, problem in checked if not problem]
    warn_skipped(source, problems, "damaged or non-image file(s)")
    nonempty(kept, f"{source}: {none}")
    classes = classes or _sorted_names(sorted({name for _, name in kept}))
    index = {name: i for i, name in enumerate(classes)}
    return ImageFiles([path for path, _ in kept], np.array([index[name] for _, name in kept]), classes, source,
                      skipped=len(problems))


def read_cifar(folder: Path, variant: str, split: str, source: str) -> ImageArrays:
    """A CIFAR-10/100 python-pickle folder through torchvision (``download=False``), split as the module docstring says."""
    if split not in SPLIT_NAMES:
        raise ZooError(f"unknown split {split!r}; expected train, validation, test or all")
    reader = _CIFAR[variant]
    root = folder.parent if folder.name == reader.base_folder else folder
    base = root / reader.base_folder
    expected = [name for name, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]
    for name in expected:
        if not (base / name).is_file():
            raise FileNotFoundError(f"{source}: {base / name} is missing; expected the python-pickle "
                                    f"layout {base}/ with {', '.join(expected)}")
    official_train = split in ("train", "validation")
    try:
        data = reader(str(root), train=official_train, download=False)
    except RuntimeError:
        raise ZooError(f"{source}: the files in {base} do not match the published {variant} checksums; "
                         "torchvision refuses to unpickle them (a pickle can run code)") from None
    images, labels = data.data, np.asarray(data.targets, dtype=np.int64)  # (N, 32, 32, 3) uint8, (N,)
    if official_train:
        keep = hash_split(list(range(len(labels))), split, key=lambda i: images[i].tobytes().hex(),
                          source=source, fractions=TWO_WAY)
        images, labels = images[keep], labels[keep]
    return ImageArrays(images, labels, list(data.classes), source)


def _sorted_names(names: list[str]) -> list[str]:
    """Class names sorted as numbers when they all are numbers ("2" < "10"), else as text."""
    return sorted(names, key=int) if names and all(name.isdigit() for name in names) else sorted(names)


def _files_below(folder: Path, seen_folders: set[tuple[int, int]], seen_files: set[str]) -> Iterator[str]:
    """Every non-hidden file below ``folder`` in a stable order, not yet in ``seen_files``.

    Symlinks are followed, but a folder already in ``seen_folders`` (a link loop, or a link
    to a folder read before, such as another class) is not walked again, with a warning, and
    each real file is listed once. Both sets (device and inode; real paths) are updated.
    """
    for parent, dirs, files in os.walk(folder, followlinks=True):
        stat = os.stat(parent)
        if (stat.st_dev, stat.st_ino) in seen_folders:
            warnings.warn(f"{parent}: not read again, it links to a folder already read (a symlink loop?)",
                          stacklevel=3)
            dirs[:] = []
            continue
        seen_folders.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(parent, name)
            real = os.path.realpath(path)
            if not name.startswith(".") and real not in seen_files:
                seen_files.add(real)
                yield path


_CIFAR = {"cifar10": CIFAR10, "cifar100": CIFAR100}
FORMATS: dict[str, Format] = {
    "imagefolder": Format(_imagefolder),
    "csv": Format(_csv, ("path", "label", "classes")),
    **{name: Format(lambda spec, split: read_cifar(Path(spec.path).expanduser(), spec.format, split,
                                                   f"{spec} [{split}]")) for name in _CIFAR},
}
