"""SkipsUndecodable: an image dataset skips (warns, counts) a record whose image cannot be decoded."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.engine.images import SkipsUndecodable
from zoo.errors import ZooError


@dataclass
class _Record:
    path: Path


class _Images(SkipsUndecodable):
    def __init__(self, paths: list[Path]) -> None:
        self.records, self.source, self.skipped, self._undecodable = [_Record(p) for p in paths], "fake", 0, set()


def test_an_undecodable_image_is_skipped_once_counted_and_the_next_one_taken(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.full((4, 6, 3), 200, dtype=np.uint8)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    images = _Images([broken, good, tmp_path / "missing.png"])
    with pytest.warns(UserWarning, match="fake: skipped an image that cannot be decoded"):
        position, image = images.decoded(0)
    assert position == 1 and image.shape == (3, 4, 6) and int(image[0, 0, 0]) == 200
    with pytest.warns(UserWarning, match="missing.png"):
        assert images.decoded(2)[0] == 1                     # wraps around past the known broken one
    assert images.skipped == 2 and images._undecodable == {0, 2}
    assert images.decoded(0)[0] == 1 and images.skipped == 2  # no second warning, no second count
    with pytest.raises(IndexError, match="fake: index 3 out of range for 3 images"):
        images.decoded(3)


def test_a_dataset_of_only_undecodable_images_says_so(tmp_path: Path) -> None:
    images = _Images([tmp_path / "a.png", tmp_path / "b.png"])
    with pytest.warns(UserWarning), pytest.raises(ZooError, match="fake: none of its 2 images can be decoded"):
        images.decoded(0)
