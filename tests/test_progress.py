"""Progress bars: shown for long steps on a terminal only, off under --no-progress, on every long step."""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
import torch

from tasks.engine import bench
from tasks.engine.evaluation import EvalOptions, run_batches
from tasks.engine.sets import BuiltinSet, prepare_sets
from zoo import progress
from zoo.progress import progress_bar, progress_enabled, working


class FakeTerminal(io.StringIO):
    """stderr that says it is a terminal, so tqdm (``disable=None``) draws."""

    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch: pytest.MonkeyPatch) -> FakeTerminal:
    """stderr is a terminal and every step counts as long (no delay). Called in the test itself: pytest
    puts its own capture back on sys.stderr between a fixture's set-up and the test."""
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    return screen


def test_a_long_step_on_a_terminal_shows_its_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    assert list(progress_bar(range(3), desc="counting", unit="item")) == [0, 1, 2]
    assert "counting:   0%|" in terminal.getvalue() and "| 0/3 [" in terminal.getvalue()     # drawn with its total


def test_a_short_step_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)        # the default delay: a quick loop draws nothing
    assert sum(progress_bar(range(100), desc="quick")) == 4950
    assert screen.getvalue() == ""


def test_no_bar_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file or pipe
    list(progress_bar(range(3), desc="piped"))
    assert sys.stderr.getvalue() == ""


def test_no_progress_turns_every_bar_off_inside_its_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    with progress_enabled(False):
        list(progress_bar(range(3), desc="hidden"))
        with progress_enabled(True):                   # an inner block cannot turn them back on
            list(progress_bar(range(3), desc="still hidden"))
        with working("hidden work"):
            pass
    assert terminal.getvalue() == ""
    list(progress_bar(range(3), desc="shown again"))
    assert "shown again" in terminal.getvalue()


def test_working_shows_the_elapsed_time_of_a_blocking_call(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    monkeypatch.setattr(progress, "DELAY_S", 0.05)     # nothing is drawn at the start; the redraws draw it
    monkeypatch.setattr(progress, "REDRAW_S", 0.01)
    with working("tracing the graph"):
        time.sleep(0.02)
        assert terminal.getvalue() == ""
        time.sleep(0.2)
        assert "tracing the graph: 00:00" in terminal.getvalue()


def test_evaluation_batches_show_a_bar_of_the_batch_count(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    model = torch.nn.Linear(2, 1)
    keys = [[0, 1], [2, 3], [4]]
    outputs = list(run_batches(model, keys, lambda key: {"x": torch.ones(len(key), 2)},
                               lambda batch: model(batch["x"]).shape[0], EvalOptions()))
    assert [n for _, n in outputs] == [2, 2, 1] and "| 0/3 [" in terminal.getvalue()
    before = terminal.getvalue()
    list(run_batches(model, keys, lambda key: {"x": torch.ones(1, 2)}, lambda b: 0, EvalOptions(progress=False)))
    assert terminal.getvalue() == before


def test_data_preparation_shows_a_bar_over_the_sets(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    terminal = on_terminal(monkeypatch)
    def build(folder: Path) -> str:
        (folder / "train.txt").write_text("x")
        return "one file"

    sets = {name: BuiltinSet(name, build, lambda folder, split: []) for name in ("first", "second")}
    prepare_sets("toy", sets)
    assert "| 0/2 [" in terminal.getvalue()
    out = capsys.readouterr().out
    assert "toy:first: one file in" in out and "toy:second: one file in" in out


def test_benchmark_rounds_show_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_terminal(monkeypatch)
    monkeypatch.setattr(bench, "time_block", lambda workload, device, precision, count: 0.5)
    workloads = [type("W", (), {"name": name, "items": 4})() for name in ("ours", "reference")]
    rounds = bench.interleave(workloads, [2, 2], 3, torch.device("cpu"), "fp32")
    assert rounds.items_per_s == [[16.0, 16.0]] * 3
    assert "ours / reference:   0%|" in terminal.getvalue() and "| 0/3 [" in terminal.getvalue()
