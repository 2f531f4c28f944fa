"""The ``zoo`` command's own subcommands: listing and data preparation."""
from __future__ import annotations

import pytest

import zoo
from tasks.engine.task import Task
from zoo import cli

TASK_NAMES = zoo.list_tasks()


def test_list_tasks_prints_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["list", "tasks"])
    assert capsys.readouterr().out.split() == TASK_NAMES


def test_data_prepare_quick_builds_only_each_tasks_quick_set(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, tuple] = {}

    def record(task: Task, sets: list[str] | None = None, force: bool = False) -> None:
        calls[task.name] = (sets, force)

    for name in TASK_NAMES:
        monkeypatch.setattr(type(zoo.get_task(name)), "prepare", record)
    cli.main(["data", "prepare", "--quick"])
    assert calls == {name: ([zoo.get_task(name).quick_set], False) for name in TASK_NAMES}
    assert calls["asr"] == (["digits"], False) and calls["sentiment"] == (["default"], False)
    calls.clear()
    cli.main(["data", "prepare", "translation", "--set", "numbers", "--force"])
    assert calls == {"translation": (["numbers"], True)}
    calls.clear()
    cli.main(["data", "prepare", "sentiment"])
    assert calls == {"sentiment": (None, False)}
