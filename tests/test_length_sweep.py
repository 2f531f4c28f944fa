"""``python -m benchmarks --sweep-length``: slope fitting, a tiny sweep end to end, argument errors."""
from __future__ import annotations

import json

import pytest

from benchmarks import length_sweep, run


def test_the_slope_of_a_quadratic_cost_is_two_and_of_a_linear_one_one() -> None:
    lengths = [64, 128, 256, 512, 1024]
    assert length_sweep.fit_slope(lengths, [3e-6 * n ** 2 for n in lengths]) == pytest.approx(2.0, abs=1e-9)
    assert length_sweep.fit_slope(lengths, [0.5 * n for n in lengths]) == pytest.approx(1.0, abs=1e-9)
    # linear at short lengths, quadratic above: the upper half shows the quadratic part
    mixed = [n + n ** 2 / 256 for n in lengths]
    upper = length_sweep.upper_half(lengths)
    assert upper == [2, 3, 4]
    whole = length_sweep.fit_slope(lengths, mixed)
    top = length_sweep.fit_slope([lengths[i] for i in upper], [mixed[i] for i in upper])
    assert 1.0 < whole < top < 2.0
    with pytest.raises(ValueError, match="two or more"):
        length_sweep.fit_slope([64], [1.0])


def test_repetitions_are_fewer_for_slow_points_within_bounds() -> None:
    assert length_sweep.repetitions(0.001, 3.0) == length_sweep.MAX_REPEATS
    assert length_sweep.repetitions(0.5, 3.0) == 6
    assert length_sweep.repetitions(10.0, 3.0) == length_sweep.MIN_REPEATS


def test_a_tiny_sweep_writes_json_markdown_and_a_picture(tmp_path, capsys) -> None:
    status = run.main(["--sweep-length", "image", "decode", "--quick", "--threads", "1", "--no-progress",
                       "--out", str(tmp_path)])
    assert status == 0
    [result] = tmp_path.glob("*-sweep.json")
    payload = json.loads(result.read_text())
    assert {"machine", "options", "curves", "kv_speedup"} <= payload.keys()
    assert payload["options"]["sweep_length"] == ["image", "decode"] and payload["options"]["seconds"] > 0
    labels = [curve["label"] for curve in payload["curves"]]
    assert [c["sweep"] for c in payload["curves"]] == ["image", "decode", "decode"], labels
    for curve in payload["curves"]:
        assert {"slope", "slope_upper", "upper_from", "points", "unit", "precision"} <= curve.keys()
        assert len(curve["points"]) == 3 and all(p["seconds"] > 0 and p["repeats"] >= 3 for p in curve["points"])
    image = payload["curves"][0]["points"]
    assert [p["length"] for p in image] == [(size // 16) ** 2 + 1 for size in length_sweep.TINY.image_sizes]
    assert [s["context"] for s in payload["kv_speedup"]] == list(length_sweep.TINY.decode_contexts)
    assert result.with_suffix(".png").stat().st_size > 10_000
    markdown = result.with_suffix(".md").read_text()
    assert "upper-half slope" in markdown and "KV-cache speed-up" in markdown
    assert "ViT-Ti/16 forward" in capsys.readouterr().out


def test_an_unknown_sweep_name_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--sweep-length", "txt"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unknown sweep 'txt'" in lines[0] and "text" in lines[0]
