"""Every ```python block of README.md and of tasks/*/README.md runs as written.

Each block is one case (id: the page and the heading above the block), executed on its own in
a fresh temporary working folder where the files the snippets read already lie at the paths
they name: tiny run folders (``runs/sentiment``, ``runs/austen``, a LoRA run ``runs/x`` trained
from ``runs/base``), a transformers GPT-2 folder, a timm ViT and a torchaudio wav2vec2 weights
file. They are written once per module and linked into each case's folder, so what a snippet
writes (``my-model``, ``runs/x-merged``...) stays in its own folder. A block preceded by
``<!-- snippet: skip (REASON) -->`` is reported as skipped with that reason; keep them rare.

Every ``zoo ...`` line of the pages' shell blocks is parsed by the real parsers (the command's, then
the task's flags), so a renamed flag or choice fails here too; nothing of them runs.
"""
from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import save_file

import zoo
from tasks.engine.checkpoints import write_checkpoint
from tests.test_task_contract import saved_tiny_model
from zoo.cli import HANDED_OVER, OWN_FLAGS, TASK_COMMANDS, build_parser
from zoo.registry import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "tasks").glob("*/README.md"))]
FENCE = re.compile(r"^```(\S*)")
SKIP = re.compile(r"^<!-- snippet: skip \((.+)\) -->$")
SHELL_FENCES = ("bash", "sh", "")
SHELL_ENDS = {">", "|", "&&", ";", "2>&1"}     # a command line's own words end before a redirection or a pipe

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class Snippet:
    """One ```python block: where it is (``README.md: A short tour``), its source and a skip reason."""

    where: str
    source: str
    line: int
    skip: str | None


def snippets(page: Path, name: str) -> list[Snippet]:
    """The ```python blocks of Markdown ``page``, each named ``NAME: the heading above it``."""
    found: list[Snippet] = []
    heading, fence, body, start, previous = "top", None, [], 0, ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        opened = FENCE.match(line)
        if fence is not None:
            if line.startswith("```"):
                if fence == "python":
                    skip = SKIP.match(previous)
                    found.append(Snippet(f"{name}: {heading}", "\n".join(body) + "\n", start,
                                         skip.group(1) if skip else None))
                fence = None
            else:
                body.append(line)
        elif opened:
            fence, body, start = opened.group(1), [], number
        else:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            if line.strip():
                previous = line.strip()
    return found


SNIPPETS = [snippet for page in PAGES for snippet in snippets(page, str(page.relative_to(ROOT)))]


def _ids() -> list[str]:
    """``README.md: heading`` per snippet, numbered when one heading has several."""
    counts: dict[str, int] = {}
    names = []
    for snippet in SNIPPETS:
        counts[snippet.where] = counts.get(snippet.where, 0) + 1
        names.append(snippet.where if counts[snippet.where] == 1 else f"{snippet.where} ({counts[snippet.where]})")
    return names


def zoo_lines(page: Path) -> list[tuple[int, list[str]]]:
    """(line number, words after ``zoo``) of every ``zoo ...`` command in the page's shell blocks."""
    found, fence = [], None
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        opened = FENCE.match(line)
        if opened and fence is None:
            fence = opened.group(1)
        elif line.startswith("```"):
            fence = None
        elif fence in SHELL_FENCES and line.startswith("zoo "):
            following = number
            while line.endswith("\\"):                  # a command continued on the next line
                line, following = line[:-1] + lines[following], following + 1
            words = shlex.split(line, comments=True)[1:]
            cut = next((i for i, word in enumerate(words) if word in SHELL_ENDS), len(words))
            found.append((number, words[:cut]))
    return found


def parse_error(words: list[str], capsys: pytest.CaptureFixture[str]) -> str | None:
    """The one-line error the real parsers give for `zoo WORDS` (the command's, then the task's flags); None if
    they parse. `bench` and `demo` are other programs' parsers and are not checked here."""
    try:
        if words[0] in OWN_FLAGS:        # `zoo multitask ...`: its own parser reads the whole line
            COMMANDS.meta(words[0])["parser"]().parse_args(words[1:])
            return None
        args = build_parser().parse_args(words)
        if args.command in TASK_COMMANDS:
            COMMANDS.meta(args.command)["parser"](zoo.get_task(args.task)).parse_args(args.flags)
    except SystemExit as stop:
        return None if stop.code == 0 else capsys.readouterr().err.strip()     # 0: a --help line
    return None


# ---- the files the snippets read ---------------------------------------------------------------------

def _run_folder(model_folder: Path, run: Path) -> None:
    """A run folder as `zoo train` leaves it: ``step-1/`` holding the model, ``best`` and ``last`` naming it."""
    write_checkpoint(run, 1, lambda folder: shutil.copytree(model_folder, folder, dirs_exist_ok=True), best=True)


def _lora_run(base_run: Path, run: Path) -> None:
    """``zoo train sentiment --pretrained runs/base --lora 2 --out runs/x`` in miniature (adapters untrained)."""
    model = zoo.load(base_run)
    zoo.add_lora(model, rank=2)
    write_checkpoint(run, 1, model.save, best=True)


def _gpt2_folder(folder: Path) -> None:
    """A tiny transformers GPT-2 written by ``save_pretrained`` (safetensors)."""
    import transformers

    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)


def _timm_vit_file(path: Path) -> None:
    """timm's ``vit_tiny_patch16_224`` cut to one block on 32x32 images, saved as a state dict."""
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, img_size=32, num_classes=10)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def _wav2vec2_file(path: Path) -> None:
    """torchaudio's ``wav2vec2_base`` (random weights: the snippet names that architecture, so full size)."""
    import torchaudio

    model = torchaudio.models.wav2vec2_base()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding every file the snippets read, at the paths they name."""
    root = tmp_path_factory.mktemp("readme-files")
    _run_folder(saved_tiny_model("sentiment", tmp_path_factory)[0], root / "runs" / "sentiment")
    _run_folder(saved_tiny_model("text_generation", tmp_path_factory)[0], root / "runs" / "austen")
    _run_folder(saved_tiny_model("sentiment", tmp_path_factory)[0], root / "runs" / "base")
    _lora_run(root / "runs" / "base", root / "runs" / "x")
    _gpt2_folder(root / "path" / "to" / "gpt2")
    _timm_vit_file(root / "vit_tiny.safetensors")
    _wav2vec2_file(root / "w2v.safetensors")
    return root


def _link_files(files: Path, folder: Path) -> None:
    """Link each prepared file or run into ``folder`` at its path; the folders above it are real, so
    what a snippet writes next to them (``runs/x-merged``) lands in ``folder``."""
    for top in files.iterdir():
        for item in [top] if top.is_file() else list(top.iterdir()):
            target = folder / item.relative_to(files)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(item, target_is_directory=item.is_dir())


@pytest.fixture
def workspace(files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder with the prepared files linked in, made the working directory."""
    _link_files(files, tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- the snippets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("snippet", SNIPPETS, ids=_ids())
def test_the_snippet_runs_as_written(snippet: Snippet, workspace: Path) -> None:
    if snippet.skip:
        pytest.skip(f"marked in the README: {snippet.skip}")
    namespace = {"__name__": "readme_snippet"}
    exec(compile(snippet.source, f"{snippet.where} (line {snippet.line})", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_zoo_command_line_parses(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [(number, words) for number, words in zoo_lines(page) if words[0] not in HANDED_OVER]
    assert lines, f"{page} has no zoo command line"
    errors = [f"{page.name}:{number}: zoo {shlex.join(words)}: {error}" for number, words in lines
              if (error := parse_error(words, capsys))]
    assert not errors, "\n".join(errors)


def test_a_wrong_flag_is_caught(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_error(["train", "sentiment", "--max-steps", "10"], capsys) is None
    assert "--max-stepz" in parse_error(["train", "sentiment", "--max-stepz", "10"], capsys)
    assert "invalid choice" in parse_error(["eval", "sentiment", "--checkpoint", "x", "--device", "tpu"], capsys)


def test_every_python_block_is_found_and_skips_stay_rare() -> None:
    fenced = sum(page.read_text(encoding="utf-8").count("\n```python\n") for page in PAGES)
    assert len(SNIPPETS) == fenced >= 8
    skipped = [s.where for s in SNIPPETS if s.skip]
    assert len(skipped) <= 2, f"too many README snippets marked skip: {skipped}"


def test_blocks_are_named_by_their_heading_and_a_marked_one_is_skipped(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("# zoo\n\n## Tour\n\n```python\nprint(images)\n```\n\n```bash\nzoo list\n```\n\n"
                    "### GPU\n<!-- snippet: skip (needs a GPU) -->\n\n```python\nx = 1\n```\n")
    tour, gpu = snippets(page, "README.md")
    assert (tour.where, tour.source, tour.line, tour.skip) == ("README.md: Tour", "print(images)\n", 5, None)
    assert (gpu.where, gpu.source, gpu.skip) == ("README.md: GPU", "x = 1\n", "needs a GPU")
    with pytest.raises(NameError, match="images"):     # what the parametrized case would raise for it
        exec(compile(tour.source, tour.where, "exec"), {})
