"""``python -m benchmarks --suite deploy``: one trained run per task turned into its deployment variants
(fp32 PyTorch, ONNX fp32, ONNX int8, PyTorch int8, pruned, distilled student), each measured for file
size, batch-1 latency and batched throughput against fp32 PyTorch (interleaved rounds, medians of
per-round ratios: :func:`tasks.engine.bench.interleave`) and the task's metric on the test split.

The variants are built by the functions behind `zoo export`, `zoo quantize`, `zoo prune` and
`zoo train --distill-from` into ``OUT/deploy-cache/<task>/<variant>``, and reused on a rerun (a variant
counts as built once its ``built.json`` is written). Speed is the model's forward on a collated test
batch (the ONNX variants run the exported graph under onnxruntime on the same arrays); the metric
is ``task.evaluate`` (what `zoo eval` prints), for ONNX variants over the graph's outputs (a detection
export's through the numpy decoding it ships: :class:`ExportedDetector`). A generating model (text
generation, translation, attention ASR) is timed by its greedy decoding instead, in every variant
(:mod:`benchmarks.deploy_decode`). Pruning is structured where the backbone has zoo transformer blocks,
else magnitude pruning with its sparsity in the row. A variant that cannot be made or measured becomes a
row saying why.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import zoo
from benchmarks.deploy_decode import SPEED, ExportedGenerator, decode_workload, decodes
from benchmarks.deploy_report import markdown
from tasks.detection.export import decode as decode_detections
from tasks.engine import bench
from tasks.engine.checkpoints import TRAINER_JSON, TRAINER_TENSORS
from tasks.engine.commands import checkpoint_folder, command_parser, eval_data
from tasks.engine.evaluation import EvalOptions
from tasks.engine.export import Exported, one_line
from tasks.engine.export_command import export
from tasks.engine.prune_command import REPORT as PRUNE_REPORT, prune
from tasks.engine.quantize_command import calibration_batches, quantize_checkpoint
from tasks.engine.task import Task, Workload
from zoo.errors import ZooError
from zoo.registry import BACKBONES
from zoo.pruning import structured_applies

DEFAULT_RUNS = Path("runs/demo")        # where `zoo demo` trains every task
VARIANTS = ("fp32", "onnx", "onnx-int8", "int8", "pruned", "distilled")
ONNX_VARIANTS = ("onnx", "onnx-int8")
FLOAT_VARIANTS = ("fp32", "pruned", "distilled")
BUILT = "built.json"                    # {"model": folder relative to the variant's cache folder}
CACHE = "deploy-cache"


# ---- the ONNX variants as a module the task's evaluation can score ----------------------------------------

class ExportedForward(nn.Module):
    """``model`` with its forward run by the single-graph export in ``folder`` (onnxruntime): the head,
    tokenizer and preprocessing the task's evaluation and collate read stay ``model``'s."""

    def __init__(self, model: nn.Module, folder: Path) -> None:
        super().__init__()
        self.model = model
        self.exported = Exported(folder)
        if "graphs" in self.exported.sidecar:
            raise ZooError(f"{folder}: an encoder + decoder-step export; its forward over a whole batch "
                           f"(what speed and the metric time here) is not one graph")
        self.input_names = [spec["name"] for spec in self.exported.sidecar["inputs"]]

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        arrays = {name: batch[name].cpu().numpy() for name in self.input_names if batch.get(name) is not None}
        outputs = {name: torch.from_numpy(value) for name, value in self.exported.run(**arrays).items()}
        if "log_probs" in outputs and "logits" not in outputs:   # a CTC export: log_softmax leaves log-probs as they are
            outputs["logits"] = outputs.pop("log_probs")
        return outputs


class ExportedDetector(ExportedForward):
    """A detection export as the detector the task's evaluation scores: the graph's ``scores`` (B, N, C)
    and ``boxes`` (B, N, 4) under onnxruntime, decoded by the numpy post-processor the export ships
    (:func:`tasks.detection.export.decode`, with the sidecar's ``candidates`` and ``nms_iou``).

    Each image goes through the graph cropped to its own size, with the others of that size (as
    `zoo predict detection --runtime onnx` runs it: the graph has no padding mask). The evaluation's
    decoding options pass through, so NMS is per class there, as the head's ``decode`` in `zoo eval`."""

    def forward(self, batch: dict[str, Any]) -> dict[str, list[np.ndarray]]:
        """Per image of ``batch``: its (N_i, C) scores and (N_i, 4) boxes in its pixels."""
        inputs, sizes = batch["inputs"].cpu().numpy(), [tuple(s) for s in batch["image_sizes"].tolist()]
        scores: list[np.ndarray] = [np.empty(0)] * len(sizes)
        boxes: list[np.ndarray] = [np.empty(0)] * len(sizes)
        for height, width in dict.fromkeys(sizes):
            rows = [i for i, size in enumerate(sizes) if size == (height, width)]
            out = self.exported.run(inputs=np.ascontiguousarray(inputs[rows, :, :height, :width]))
            for k, i in enumerate(rows):
                scores[i], boxes[i] = out["scores"][k], out["boxes"][k]
        return {"scores": scores, "boxes": boxes}

    def decode(self, outputs: dict[str, list[np.ndarray]], batch: dict[str, Any], *, score_threshold: float,
               max_detections: int, class_agnostic: bool = False, **options: Any) -> list[dict[str, torch.Tensor]]:
        """Per image: ``boxes`` (K, 4) xyxy in the pixels it was fed at, ``scores`` (K,), ``labels`` (K,)."""
        side = self.exported.sidecar
        found = []
        for scores, boxes, size in zip(outputs["scores"], outputs["boxes"], batch["image_sizes"].tolist()):
            kept = decode_detections(scores, boxes, size, score_threshold, max_detections, side["candidates"],
                                     side["nms_iou"], class_agnostic)
            found.append({name: torch.from_numpy(value) for name, value in zip(("boxes", "scores", "labels"), kept)})
        return found


# ---- building the variants ----------------------------------------------------------------------------

def run_folder(task: Task, runs: Path) -> Path:
    """The trained run of ``task`` under ``runs``; a missing one is refused naming the command that makes it."""
    run = runs / task.name
    if not run.is_dir():
        raise ZooError(f"--runs {runs}: no trained run {run} for {task.name}; make it with `zoo demo --out {runs}` "
                       f"or `zoo train {task.name} --data {task.quick_data} --max-steps 200 --out {run}`")
    return run


def half_size(model: nn.Module) -> dict[str, Any]:
    """The teacher's backbone arguments for a student of about half its parameters: ``depth`` halved
    (the blocks hold most of them), or where there is one block, ``dim`` halved (heads halved too when
    they no longer divide it)."""
    args = dict(model.backbone.zoo_spec.get("args") or {})
    name = model.backbone.zoo_spec["name"]
    registered = BACKBONES.meta(name).get("config", {}) if name in BACKBONES else {}    # what args leave out
    depth = args.get("depth", registered.get("depth"))
    if isinstance(depth, int) and depth >= 2:
        return {**args, "depth": depth // 2}
    dim = args.get("dim", registered.get("dim", getattr(model.backbone, "dim", None)))
    if not isinstance(dim, int):
        raise ZooError(f"the {name} backbone has no 'depth' or 'dim' argument to halve for a student")
    args["dim"] = dim // 2
    heads = args.get("heads", registered.get("heads", getattr(model.backbone, "heads", None)))
    if isinstance(heads, int) and args["dim"] % heads:
        args["heads"] = max(1, heads // 2)
    return args


TIMM_WIDTH = re.compile(r"^timm/(?P<family>.+)_(?P<width>\d{3})$")    # timm's width multiplier x100: _100 = 1.0


def smaller_timm(name: str) -> str:
    """The student backbone of a timm backbone named with a width multiplier (``timm/<family>_<NNN>``):
    the same family's widest variant at most half as wide (``mobilenetv3_small_100`` ->
    ``mobilenetv3_small_050``), else its narrowest one narrower than the teacher; refused when the
    name has no width or the family no narrower variant."""
    import timm

    match = TIMM_WIDTH.match(name)
    if match is None:
        raise ZooError(f"backbone {name!r}: no 'dim' argument to halve and no timm width suffix (_100, _075) to "
                       f"narrow; distil into a smaller backbone with `zoo train --distill-from RUN --backbone NAME`")
    family, width = match["family"], int(match["width"])
    widths = sorted(int(n.rsplit("_", 1)[1]) for n in timm.list_models(f"{family}_*")
                    if re.fullmatch(rf"{re.escape(family)}_\d{{3}}", n))
    narrower = [w for w in widths if w <= width // 2] or [w for w in widths if w < width][:1]
    if not narrower:
        raise ZooError(f"backbone {name!r}: timm has no narrower {family}_* variant (widths {widths}); "
                       f"distil into a smaller backbone with `zoo train --distill-from RUN --backbone NAME`")
    return f"timm/{family}_{narrower[-1]:03d}"


def student_backbone(teacher: nn.Module) -> list[str]:
    """The `zoo train` flags of the student's backbone: the teacher's with ``depth`` or ``dim`` halved
    (:func:`half_size`), or for a timm backbone without ``dim`` the narrower variant :func:`smaller_timm`
    picks."""
    args = dict(teacher.backbone.zoo_spec.get("args") or {})
    name = teacher.backbone.zoo_spec["name"]
    if "dim" not in args and "depth" not in args and name.startswith("timm/"):
        return ["--backbone", smaller_timm(name)]
    return ["--backbone-args", json.dumps(half_size(teacher))]


def distill_student(task: Task, run: Path, out: Path, steps: int) -> Path:
    """A half-size student of ``run`` (:func:`student_backbone`) trained ``steps`` steps against it, with
    the teacher's own flags."""
    teacher = zoo.load(checkpoint_folder(task, str(run), "bench"))
    flags = ["--config", str(run / "args.json"), "--out", str(out), "--max-steps", str(steps),
             "--distill-from", str(run), *student_backbone(teacher), "--no-progress"]
    if "--tokenizer" in command_parser("train", task)._option_string_actions:
        flags += ["--tokenizer", str(run)]          # the teacher's token ids, which distillation needs
    return task.command("train", flags)


def build_variant(task: Task, run: Path, variant: str, cache: Path, args: argparse.Namespace) -> Path:
    """The model (or export) folder of ``variant``, built into ``cache/variant`` unless built there before."""
    if variant == "fp32":
        return checkpoint_folder(task, str(run), "bench")
    dest = cache / variant
    if (dest / BUILT).is_file():
        return dest / json.loads((dest / BUILT).read_text())["model"]
    shutil.rmtree(dest, ignore_errors=True)
    model = _make(task, run, variant, dest, args)
    (dest / BUILT).write_text(json.dumps({"model": str(model.resolve().relative_to(dest.resolve()))}) + "\n")
    return model


def _make(task: Task, run: Path, variant: str, dest: Path, args: argparse.Namespace) -> Path:
    data, _ = eval_data(checkpoint_folder(task, str(run), "bench"), None, None)
    if variant == "onnx":
        return export(task, str(run), "onnx", dest / "model")
    if variant == "onnx-int8":
        return quantize_checkpoint(task, str(run), "dynamic", dest / "model", fmt="onnx")
    if variant == "int8":
        return quantize_checkpoint(task, str(run), "dynamic", dest / "model")
    if variant == "pruned":
        return prune(task, str(run), 0.3, dest / "model", finetune_steps=args.finetune_steps, data=data,
                     device="cpu", progress=False, **pruning_options(task, run))[0]
    if variant == "distilled":
        return checkpoint_folder(task, str(distill_student(task, run, dest / "run", args.distill_steps)), "bench")
    raise ValueError(f"unknown variant {variant}")


def pruning_options(task: Task, run: Path) -> dict[str, str]:
    """Structured pruning (heads and MLP channels removed) where the run's backbone has zoo transformer
    blocks, else magnitude pruning of every layer by the same amount (a global ranking empties the
    layers of small weights behind batch norms: :func:`zoo.pruning.prune_magnitude`), whose sparsity
    the row reports (:func:`variant_note`)."""
    if structured_applies(zoo.load(checkpoint_folder(task, str(run), "bench"))):
        return {"structured": "both"}
    return {"structured": "none", "magnitude_scope": "layer"}


# ---- measuring -----------------------------------------------------------------------------------------

def folder_megabytes(folder: Path) -> float:
    """Size of what deploys from ``folder``: its files, less a checkpoint's trainer state (optimizer moments)
    and the fine-tune run below a pruned model."""
    return sum(p.stat().st_size for p in folder.iterdir()
               if p.is_file() and p.name not in (TRAINER_TENSORS, TRAINER_JSON)) / 1e6


def variant_note(variant: str, folder: Path) -> str | None:
    """What the row says beside the variant's name: how a magnitude-pruned model was ranked, its sparsity."""
    if variant != "pruned" or not (folder / PRUNE_REPORT).is_file():
        return None
    report = json.loads((folder / PRUNE_REPORT).read_text())
    if report["sparsity"] is None:          # structured: the parameter count says what went
        return None
    ranked = "per layer" if report.get("scope") == "layer" else "global"
    return f"magnitude {ranked}, sparsity {report['sparsity']:.3f}"


def load_variant(variant: str, folder: Path, reference: nn.Module) -> nn.Module:
    """The runnable model of a built variant, on the CPU in eval mode (an export of a generating model
    generates through its graphs: :mod:`benchmarks.deploy_decode`)."""
    if variant in ONNX_VARIANTS:
        if decodes(reference):
            return ExportedGenerator(reference, folder).eval()
        wrapper = ExportedDetector if getattr(reference, "task", None) == "detection" else ExportedForward
        return wrapper(reference, folder).eval()
    return zoo.load(folder, map_location="cpu").eval()


def forward_workload(name: str, model: nn.Module, batch: dict[str, Any], size: int) -> Workload:
    """One forward of ``model`` on ``batch`` (``size`` samples) as a benchmark workload."""
    return Workload(name=name, unit="samples", items=size, step=lambda: model(batch), model=model, batch_size=size)


def test_batch(task: Task, model: nn.Module, dataset: Any, size: int) -> dict[str, Any]:
    """The first ``size`` test samples spread over the set, through ``model``'s evaluation collate."""
    return calibration_batches(task, model, dataset, 1, size)[0]


def compare(baseline: Workload, other: Workload, args: argparse.Namespace) -> dict[str, float]:
    """``other`` against ``baseline`` in interleaved rounds: the median ratio of items/s and both step times."""
    cpu = torch.device("cpu")
    warm = [bench.warm_up(w, cpu, "fp32", args.warmup) for w in (baseline, other)]
    steps = [bench.steps_for(w.step_s, args.block_seconds) for w in warm]
    rounds = bench.interleave([baseline, other], steps, args.rounds, cpu, "fp32")
    ratio, low, high = bench.spread(rounds.ratios(1, 0))
    return {"ratio": ratio, "ratio_min": low, "ratio_max": high,
            "baseline_step_s": rounds.median_step_s(0), "step_s": rounds.median_step_s(1)}


def score(task: Task, model: nn.Module, dataset: Any) -> float:
    """The task's metric on ``dataset`` as `zoo eval` computes it."""
    metrics = task.evaluate(model, task.for_model(dataset, model), EvalOptions(progress=False, split="test"))
    return float(metrics[task.metric.name])


def measure_variant(task: Task, variant: str, folder: Path, fp32: nn.Module, dataset: Any,
                    args: argparse.Namespace) -> dict[str, Any]:
    """Size, batch-1 and batched speed against fp32 PyTorch, and the metric of one built variant. A
    generating model's speed is its decoding (:mod:`benchmarks.deploy_decode`), the row says so."""
    model = load_variant(variant, folder, fp32)
    workload = forward_workload
    if decodes(fp32):
        def workload(name: str, runner: nn.Module, batch: dict[str, Any], size: int) -> Workload:
            return decode_workload(name, runner, batch, size, args.decode_tokens)
    runnable = fp32 if variant in ONNX_VARIANTS else model       # whose collate builds the batches
    row: dict[str, Any] = {"megabytes": folder_megabytes(folder), "folder": str(folder),
                           "note": variant_note(variant, folder),
                           # float parameters only: an int8 model's weights are buffers, an export's are in its graph
                           "parameters": bench.parameter_count(model) if variant in FLOAT_VARIANTS else None,
                           "speed": SPEED.format(tokens=args.decode_tokens) if decodes(fp32) else "forward"}
    with torch.inference_mode():
        for label, size in (("batch1", 1), ("batched", args.deploy_batch)):
            if variant == "fp32":
                row[label] = None
                continue
            base = workload("fp32", fp32, test_batch(task, fp32, dataset, size), size)
            row[label] = compare(base, workload(variant, model, test_batch(task, runnable, dataset, size), size),
                                 args)
    try:
        row["metric"] = score(task, model, dataset)
    except Exception as error:  # e.g. an export whose outputs are not the head's: the speed still stands
        row["metric"], row["metric_error"] = None, one_line(error)
    return row


def task_rows(task: Task, runs: Path, out: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant's row for ``task``; a variant that fails becomes a row with its reason."""
    run = run_folder(task, runs)
    fp32_folder = checkpoint_folder(task, str(run), "bench")
    fp32 = zoo.load(fp32_folder, map_location="cpu").eval()
    data, split = eval_data(fp32_folder, None, None)
    dataset = task.datasets(data, split)
    rows = []
    for variant in args.variants:
        common = {"task": task.name, "variant": variant, "metric_name": task.metric.name,
                  "higher_is_better": task.metric.higher_is_better, "data": data, "split": split}
        try:
            torch.manual_seed(0)
            folder = build_variant(task, run, variant, out / CACHE / task.name, args)
            row = {**common, **measure_variant(task, variant, folder, fp32, dataset, args)}
        except Exception as error:  # one variant that cannot be made must not hide the others
            if not isinstance(error, ZooError):
                traceback.print_exc()
            row = {**common, "error": one_line(error)}
        print(_describe(row), flush=True)
        rows.append(row)
    return rows


def _describe(row: dict[str, Any]) -> str:
    head = f"{row['task']} {row['variant']}" + (f" ({row['note']})" if row.get("note") else "") + ": "
    if row.get("error"):
        return head + f"not measured: {row['error']}"
    speed = "".join(f", {label} {row[label]['ratio']:.2f}x" for label in ("batch1", "batched") if row[label])
    metric = f"{row['metric']:.4g}" if row["metric"] is not None else f"not scored ({row['metric_error']})"
    return head + f"{row['megabytes']:.2f} MB{speed}, {row['metric_name']} {metric}"


def run(args: argparse.Namespace, machine_of: Callable[[torch.device], dict[str, Any]],
        write_json: Callable[..., None], stem_of: Callable[[dict[str, Any]], str]) -> int:
    """The deploy suite over ``args.task`` (default every exporting task); returns the exit status."""
    names = args.task or zoo.list_tasks()
    tasks = [zoo.get_task(name) for name in names]
    for task in tasks:                  # every missing run is refused before anything is built
        run_folder(task, args.runs)
    rows: list[dict[str, Any]] = []
    for task in tasks:
        rows.extend(task_rows(task, args.runs, args.out, args))
    machine = machine_of(torch.device("cpu"))
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    stem = args.out / f"deploy-{stem_of(machine)}"
    write_json(stem.with_suffix(".json"), machine, rows, options)
    table = markdown(machine, rows, options)
    stem.with_suffix(".md").write_text(table, encoding="utf-8")
    print()
    print(table)
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.md')}")
    return 0
