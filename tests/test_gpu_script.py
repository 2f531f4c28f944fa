"""benchmarks/gpu.sh runs the GPU tests and the cuda benchmark, each under its own limit, into OUT."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"


def _fake_python(tmp_path: Path, test_status: int, bench_status: int) -> Path:
    """A stand-in interpreter that records its arguments and exits as told for each part."""
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$@" >> {tmp_path}/calls
case "$2" in pytest) exit {test_status};; benchmarks) exit {bench_status};; esac
""")
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("test_status, bench_status, expected", [(0, 0, 0), (1, 0, 1), (0, 3, 3), (2, 3, 2)])
def test_both_parts_run_and_the_first_failure_is_the_exit_status(tmp_path: Path, test_status: int,
                                                                 bench_status: int, expected: int) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PY": str(_fake_python(tmp_path, test_status, bench_status)), "OUT": str(out)}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == expected
    pytest_call, bench_call = (tmp_path / "calls").read_text().splitlines()
    assert pytest_call.startswith("-m pytest -q -m gpu") and pytest_call.endswith("tests/test_gpu.py")
    assert bench_call == f"-m benchmarks --device cuda --quick --out {out}"
    assert (out / "gpu-tests.txt").is_file() and (out / "gpu-bench.txt").is_file()


def test_a_part_past_its_limit_is_stopped(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/usr/bin/env bash\nsleep 30\n")
    fake.chmod(0o755)
    env = {**os.environ, "PY": str(fake), "OUT": str(tmp_path / "out"), "TEST_SECONDS": "1", "BENCH_SECONDS": "1"}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 124     # timeout's status
