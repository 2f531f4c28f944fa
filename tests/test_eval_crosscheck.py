"""Each task's evaluation (what `zoo eval` runs: ``task.evaluate(model, dataset, options)``) against the
reference library called directly on the same raw strings and boxes, plus hand-computed detection cases.

Models are stubs with fixed outputs (or tiny untrained models whose forward is replaced), so every
expected value is computed here from the fixture alone, never copied from the code under test.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

from typing import Callable

import jiwer
import numpy as np
import pytest
import sacrebleu
import soundfile
import torch
from num2words import num2words
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.metrics import f1_score

import zoo
from tasks.asr.units import alphabet_for
from tasks.detection.evaluation import detect
from tasks.detection.task import DetectionTask
from tasks.engine.data import write_jsonl
from tasks.engine.evaluation import EvalOptions
from tasks.engine.trainer import add_train_arguments
from tasks.translation.vocab import tokenizers

DESIGN_FRACTIONS = {"accuracy", "top1", "top5", "macro_f1", "map", "map_50", "map_75", "mar_100", "wer", "cer"}


pytestmark = pytest.mark.usefixtures("one_thread")


def train_args(task_name: str, argv: list[str]) -> argparse.Namespace:
    """The namespace `zoo train TASK ARGV` builds."""
    task = zoo.get_task(task_name)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    task.add_arguments(parser)
    parser.set_defaults(backbone=task.default_backbone, head=task.default_head)
    return parser.parse_args(argv)


def check_keys(metrics: dict, task: str) -> None:
    """The keys docs/design.md names: snake_case, the task's primary metric among them, fractions in [0, 1];
    ``split`` and ``n`` are the CLI's to add."""
    assert zoo.get_task(task).metric.name in metrics
    assert not {"split", "n"} & metrics.keys()
    assert all(key == key.lower() and " " not in key and "-" not in key for key in metrics)
    assert all(0.0 <= metrics[key] <= 1.0 for key in DESIGN_FRACTIONS & metrics.keys())


# ----------------------------------------------------------------------------- detection

MODEL_LABELS = ["dog", "cat"]            # the model's class order
CATEGORIES = {1: "cat", 2: "dog"}        # the data set's: mapped onto the model's by name


class StubDetector(torch.nn.Module):
    """Fixed detections, given per image file in its original pixels, scaled to the image as fed.

    Records the pixel mask of every batch it sees (``masks``).
    """

    def __init__(self, detections: dict[str, dict[str, torch.Tensor]], size: int | None,
                 padding_sensitive: bool = False) -> None:
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.padding_sensitive = padding_sensitive
        self.head = SimpleNamespace(labels=MODEL_LABELS)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the evaluation a device to read
        self.preprocessing = {"mean": [0.5] * 3, "std": [0.5] * 3, "transform": {"size": size}}
        self.detections = detections
        self.masks: list[torch.Tensor] = []

    def forward(self, batch: dict) -> dict:
        self.masks.append(batch["mask"].clone())
        return {}

    def decode(self, outputs: dict, batch: dict, **options) -> list[dict[str, torch.Tensor]]:
        found = []
        for path, (fed_h, fed_w) in zip(batch["paths"], batch["image_sizes"].tolist()):
            d = self.detections.get(Path(path).name, _no_detections())
            with Image.open(path) as image:
                w, h = image.size
            found.append({**d, "boxes": d["boxes"] * torch.tensor([fed_w / w, fed_h / h] * 2)})
        return found


def _no_detections() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}


def _detections(rows: list[tuple[str, list[float], float]]) -> dict[str, torch.Tensor]:
    """(class name, xyxy box in original pixels, score) rows -> a decode() dict in the model's label ids."""
    if not rows:
        return _no_detections()
    return {"boxes": torch.tensor([box for _, box, _ in rows], dtype=torch.float32),
            "scores": torch.tensor([score for _, _, score in rows], dtype=torch.float32),
            "labels": torch.tensor([MODEL_LABELS.index(name) for name, _, _ in rows])}


def _coco(folder: Path, images: dict[str, tuple[int, int]], boxes: dict[str, list[tuple[str, list[float]]]]) -> Path:
    """Write PNGs of (width, height) and a COCO file of their (class name, xyxy) boxes; returns the JSON."""
    ids = {name: number for number, name in enumerate(images, 1)}
    category = {name: number for number, name in CATEGORIES.items()}
    annotations = []
    for file, objects in boxes.items():
        for name, (x1, y1, x2, y2) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": ids[file], "category_id": category[name],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    rng = np.random.default_rng(0)
    for file, (w, h) in images.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / file)
    coco = {"images": [{"id": ids[f], "file_name": f, "width": w, "height": h} for f, (w, h) in images.items()],
            "annotations": annotations,
            "categories": [{"id": number, "name": name} for number, name in CATEGORIES.items()]}
    path = folder / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def _evaluate_detection(annotations: Path, model: StubDetector, batch_size: int = 2) -> dict[str, float]:
    task = DetectionTask()
    dataset = task.datasets(f"coco:{annotations}", "all")
    metrics = task.evaluate(model, dataset, EvalOptions(batch_size=batch_size, precision="fp32"))
    check_keys(metrics, "detection")
    return metrics


def _pycocotools(annotations: Path, detections: dict[str, dict[str, torch.Tensor]]) -> dict[str, float]:
    """COCOeval's bbox stats on the raw annotation file and the detections in original pixels."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        image_id = {image["file_name"]: image["id"] for image in truth.dataset["images"]}
        category = {name: number for number, name in CATEGORIES.items()}
        results = [{"image_id": image_id[file], "category_id": category[MODEL_LABELS[int(label)]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
                   for file, d in detections.items()
                   for (x1, y1, x2, y2), score, label in zip(d["boxes"].tolist(), d["scores"], d["labels"])]
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"map": stats[0], "map_50": stats[1], "map_75": stats[2], "mar_100": stats[8]}


def test_detection_map_matches_pycocotools_on_the_same_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = {"a.png": (64, 48), "b.png": (48, 64), "c.png": (40, 40), "d.png": (80, 60), "e.png": (64, 48)}
    truth: dict[str, list[tuple[str, list[float]]]] = {}
    detections = {}
    for file, (w, h) in images.items():
        objects = []
        for _ in range(int(rng.integers(1, 4))):
            x1, y1 = float(rng.integers(0, w - 12)), float(rng.integers(0, h - 12))
            objects.append((str(rng.choice(["cat", "dog"])), [x1, y1, x1 + float(rng.integers(4, 12)),
                                                                y1 + float(rng.integers(4, 12))]))
        truth[file] = objects
        rows = []
        for name, box in objects:
            if rng.random() < 0.8:  # found, a little off, sometimes under the wrong class
                jitter = rng.normal(0, 1.0, 4).tolist()
                wrong = rng.random() < 0.2
                rows.append(({"cat": "dog", "dog": "cat"}[name] if wrong else name,
                             [v + j for v, j in zip(box, jitter)], float(rng.uniform(0.3, 1.0))))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            x1, y1 = float(rng.integers(0, w - 10)), float(rng.integers(0, h - 10))
            rows.append((str(rng.choice(["cat", "dog"])), [x1, y1, x1 + 8, y1 + 8], float(rng.uniform(0.05, 0.6))))
        detections[file] = _detections(rows)
    annotations = _coco(tmp_path, images, truth)
    ours = _evaluate_detection(annotations, StubDetector(detections, size=32))  # fed at about half size
    reference = _pycocotools(annotations, detections)
    assert 0.05 < reference["map"] < 0.95  # a case that can tell right from wrong
    assert ours == pytest.approx(reference, abs=1e-6)


def _grid(n: int, side: float = 10.0) -> list[tuple[str, list[float]]]:
    return [("cat", [4.0 + 14 * i, 8.0, 4.0 + 14 * i + side, 8.0 + side]) for i in range(n)]


def test_perfect_detections_score_one(tmp_path: Path) -> None:
    truth = {"a.png": _grid(3) + [("dog", [30.0, 40.0, 33.0, 43.0])], "b.png": [("dog", [1.0, 2.0, 40.0, 30.0])]}
    annotations = _coco(tmp_path, {"a.png": (64, 64), "b.png": (48, 40)}, truth)
    detections = {file: _detections([(name, box, 0.9) for name, box in objects]) for file, objects in truth.items()}
    metrics = _evaluate_detection(annotations, StubDetector(detections, size=16))
    assert metrics == pytest.approx({"map": 1.0, "map_50": 1.0, "map_75": 1.0, "mar_100": 1.0}, abs=1e-6)


@pytest.mark.parametrize("n", [2, 4, 5])
def test_one_missed_box_among_n_lowers_recall_by_one_nth(tmp_path: Path, n: int) -> None:
    truth = {"a.png": _grid(n)}
    annotations = _coco(tmp_path, {"a.png": (80, 32)}, truth)
    found = _detections([(name, box, 0.9) for name, box in truth["a.png"][1:]])
    metrics = _evaluate_detection(annotations, StubDetector({"a.png": found}, size=None))
    assert metrics["mar_100"] == pytest.approx(1 - 1 / n, abs=1e-6)  # float32 from the evaluator


def test_a_missed_3x3_box_counts_as_a_miss(tmp_path: Path) -> None:
    """Fed at a quarter of its size the 3x3 box is under a pixel; it still counts (it used to be dropped)."""
    truth = {"a.png": _grid(3) + [("cat", [50.0, 50.0, 53.0, 53.0])]}
    annotations = _coco(tmp_path, {"a.png": (64, 64)}, truth)
    found = _detections([(name, box, 0.9) for name, box in truth["a.png"][:3]])
    metrics = _evaluate_detection(annotations, StubDetector({"a.png": found}, size=16))
    assert metrics["mar_100"] == pytest.approx(0.75, abs=1e-6)
    assert metrics["map"] < 1.0


def test_padding_sensitive_backbones_get_batches_of_one_image_size(tmp_path: Path) -> None:
    sizes = [(32, 32), (40, 24), (32, 32), (24, 40), (40, 24), (32, 32), (32, 32)]
    images = {f"{i}.png": size for i, size in enumerate(sizes)}
    truth = {file: [("cat", [2.0, 2.0, 12.0, 12.0])] for file in images}
    annotations = _coco(tmp_path, images, truth)
    detections = {file: _detections([("cat", [2.0, 2.0, 12.0, 12.0], 0.5 + 0.05 * i)]) for i, file in enumerate(images)}
    sensitive = StubDetector(detections, size=None, padding_sensitive=True)
    metrics = _evaluate_detection(annotations, sensitive, batch_size=3)
    assert all(mask.all() for mask in sensitive.masks)  # no batch mixes sizes: nothing is padded
    assert sorted(len(mask) for mask in sensitive.masks) == [1, 1, 2, 3]
    one_by_one = _evaluate_detection(annotations, StubDetector(detections, size=None), batch_size=1)
    assert metrics == one_by_one
    mixed = StubDetector(detections, size=None)
    _evaluate_detection(annotations, mixed, batch_size=3)
    assert not all(mask.all() for mask in mixed.masks)  # without the attribute batches are padded (the test can fail)


def test_detect_yields_in_input_order_when_batches_are_grouped(tmp_path: Path) -> None:
    sizes = [(32, 32), (40, 24), (32, 32), (24, 40), (40, 24)]
    images = {f"{i}.png": size for i, size in enumerate(sizes)}
    annotations = _coco(tmp_path, images, {})
    dataset = zoo.get_task("detection").datasets(f"coco:{annotations}", "all")
    model = StubDetector({}, size=None, padding_sensitive=True)
    collate = DetectionTask().make_collate(model, train=False)
    order = [Path(fed["sample"]["path"]).name for fed, _ in detect(model, (dataset[i] for i in range(5)), collate, 2)]
    assert order == [Path(dataset[i]["path"]).name for i in range(5)]


# ----------------------------------------------------------------------------- classification


def _fixed_classifier(model: torch.nn.Module, classes_of: Callable[[dict], torch.Tensor]) -> None:
    """Replace the forward: one-hot logits of ``classes_of(batch)`` (B,) long, whatever the weights."""
    def forward(batch: dict) -> dict:
        predicted = classes_of(batch)
        return {"logits": torch.nn.functional.one_hot(predicted, len(model.head.labels)).float() * 5}

    model.forward = forward


def test_sentiment_accuracy_and_macro_f1_match_a_plain_count(tmp_path: Path) -> None:
    words = ["good", "bad", "dull", "great", "fine", "awful", "superb", "weak", "nice", "poor", "grand", "tedious"]
    rows = [(f"the film is {a} and {b}", "positive" if (i * 7) % 3 else "negative")
            for i, (a, b) in enumerate((a, b) for a in words for b in words[:5])]
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    task = zoo.get_task("sentiment")
    args = argparse.Namespace(init_backbone=None, backbone="text_encoder_tiny", backbone_args={"dim": 16, "depth": 1,
                              "heads": 2}, head="classification", head_args=None, vocab_size=48, max_len=16,
                              token_dropout=0.0, batch_size=7, precision="fp32", out=None)
    model = task.build_model(args, task.datasets(f"csv:{path}", "all"))
    _fixed_classifier(model, lambda batch: (batch["inputs"] * batch["mask"]).sum(dim=1) % 2)
    dataset = task.datasets(f"csv:{path}?classes=positive,negative", "all")  # other class order than the model's
    assert dataset.classes != model.head.labels
    metrics = task.evaluate(model, dataset, EvalOptions.from_args(args))
    check_keys(metrics, "sentiment")
    collate = task.make_collate(model, train=False)
    predicted = [model.head.labels[int(model(collate([s]))["logits"].argmax())] for s in dataset]
    truth = [dataset.classes[s["label"]] for s in dataset]
    assert 0 < sum(p == t for p, t in zip(predicted, truth)) < len(truth)
    assert metrics["accuracy"] == pytest.approx(sum(p == t for p, t in zip(predicted, truth)) / len(truth), abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"), abs=1e-6)


def test_image_classification_top1_matches_a_plain_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bright = {}
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(9):
            bright[f"{label}/{i}.png"] = bool(rng.random() < 0.6)
            level = 220 if bright[f"{label}/{i}.png"] else 20
            Image.fromarray(np.full((12, 12, 3), level, dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    task = zoo.get_task("image_classification")
    args = train_args(task.name, ["--data", f"imagefolder:{tmp_path}", "--backbone-args",
                                  '{"dim": 16, "depth": 1, "heads": 2}', "--batch-size", "4"])
    model = task.build_model(args, task.datasets(args.data, "train"))
    _fixed_classifier(model, lambda batch: (batch["inputs"].mean(dim=(1, 2, 3)) > 0).long())  # bright -> class 1
    dataset = task.datasets(args.data, "all")
    metrics = task.evaluate(model, dataset, EvalOptions.from_args(args))
    check_keys(metrics, "image_classification")
    predicted = {key: model.head.labels[int(is_bright)] for key, is_bright in bright.items()}
    correct = sum(predicted[key] == key.split("/")[0] for key in bright)
    assert 0 < correct < len(bright)
    assert metrics["top1"] == pytest.approx(correct / len(bright), abs=1e-6)


# ----------------------------------------------------------------------------- text to text


def test_translation_bleu_and_chrf_match_sacrebleu_on_the_raw_strings(tmp_path: Path) -> None:
    pairs = [(num2words(n), num2words(n, lang="fr")) for n in range(300)]
    path = tmp_path / "numbers.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    task = zoo.get_task("translation")
    args = train_args(task.name, ["--backbone-args", '{"dim": 16, "depth": 1, "heads": 2}', "--head-args",
                                  '{"depth": 1, "heads": 2}', "--vocab-size", "80", "--batch-size", "8"])
    model = task.build_model(args, task.datasets(f"tsv:{path}", "all"))
    source_tok, target_tok = tokenizers(model)
    evaluated = pairs[::7]
    rng = np.random.default_rng(0)
    words = sorted({w for _, t in pairs for w in t.split()})
    hypothesis = {}
    for k, (source, target) in enumerate(evaluated):
        tokens = target.split()
        if k % 3 == 1:  # a word replaced
            tokens[int(rng.integers(len(tokens)))] = str(rng.choice(words))
        elif k % 3 == 2:  # a word dropped or added
            tokens = tokens[1:] if len(tokens) > 1 else tokens + [str(rng.choice(words))]
        hypothesis[source] = " ".join(tokens)

    def generate(batch: dict, **options) -> list[list[int]]:
        rows = [source_tok.decode(ids[keep].tolist()) for ids, keep in zip(batch["inputs"], batch["mask"])]
        return [target_tok.encode(hypothesis[source]) for source in rows]

    model.generate = generate
    test_file = tmp_path / "test.tsv"
    test_file.write_text("".join(f"{s}\t{t}\n" for s, t in evaluated), encoding="utf-8")
    metrics = task.evaluate(model, task.datasets(f"tsv:{test_file}", "all"), EvalOptions.from_args(args))
    check_keys(metrics, "translation")
    hyps, refs = [hypothesis[s] for s, _ in evaluated], [t for _, t in evaluated]
    assert 10 < metrics["bleu"] < 95
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
    assert metrics["exact_match"] == pytest.approx(sum(h == r for h, r in zip(hyps, refs)) / len(refs))


def test_asr_wer_and_cer_match_jiwer_on_the_raw_transcripts(tmp_path: Path) -> None:
    references = ["one two three", "four five", "six", "seven eight nine oh", "two two", "zero one", "five four three"]
    decoded = ["one two tree", "four five", "sick", "seven eight nine", "two to two", "zero one", "fife or three"]
    rows = []
    for i, text in enumerate(references):  # clip i is 0.2 + 0.05 i seconds long: its length tells it apart
        samples = int(16000 * (0.2 + 0.05 * i))
        soundfile.write(str(tmp_path / f"{i}.wav"), np.zeros(samples, dtype=np.float32) + 0.01 * (i + 1), 16000)
        rows.append({"audio_filepath": f"{i}.wav", "text": text})
    write_jsonl(tmp_path / "m.jsonl", rows)
    task = zoo.get_task("asr")
    dataset = task.datasets(f"manifest:{tmp_path / 'm.jsonl'}", "all")
    model = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args={"dim": 16, "depth": 1, "heads": 2,
                             "n_mels": 40}, task="asr", alphabet=alphabet_for(references + decoded))
    by_length = {int(16000 * (0.2 + 0.05 * i)): text for i, text in enumerate(decoded)}
    model.forward = lambda batch: {"lengths": batch["mask"].sum(dim=1)}
    model.head.decode = lambda outputs, beams=1, **options: [model.head.encode_text(by_length[int(n)])
                                                             for n in outputs["lengths"]]
    metrics = task.evaluate(model, dataset, EvalOptions(batch_size=3, precision="fp32", beams=1))
    check_keys(metrics, "asr")
    assert 0.05 < metrics["wer"] < 0.9
    assert metrics["wer"] == pytest.approx(jiwer.wer(references, decoded), abs=1e-9)
    assert metrics["cer"] == pytest.approx(jiwer.cer(references, decoded), abs=1e-9)
