"""Several heads on one backbone (zoo.multihead): forward, weighted loss, save/load, reset, freeze, export,
refusals, and the trainer learning every part on a two-target set."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import torch
from safetensors import safe_open

import zoo
from tasks.engine.evaluation import EvalOptions
from tasks.engine.task import Metric, Task
from tests.backbone_configs import SMALL_ARGS
from tests.format1_fixture import format1_folder
from zoo.errors import ZooError
from zoo.multihead import MultiHeadModel

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 40
SEQ2SEQ = {"name": "seq2seq", "args": {"vocab_size": VOCAB, "dim": 32, "depth": 1, "heads": 2}}
CTC = {"name": "ctc", "args": {"alphabet": None, "vocab_size": VOCAB}}
CLASSES = {"name": "classification", "args": {"num_classes": 2}}


def hybrid(**weights: float) -> MultiHeadModel:
    """The hybrid ASR shape: {ctc, seq2seq} on one unit set over one speech encoder, plus a classifier."""
    torch.manual_seed(0)
    return zoo.create_model("speech_encoder_tiny", backbone_args=SMALL_ARGS["audio"],
                            heads={"ctc": CTC, "seq2seq": SEQ2SEQ,
                                   "speaker": {"name": "classification", "args": {"num_classes": 3}}},
                            head_weights=weights or None, head_targets={"speaker": {"labels": "speakers"}})


def speech_batch() -> dict:
    torch.manual_seed(1)
    targets = torch.randint(4, 10, (2, 3))
    return {"inputs": torch.randn(2, 8000), "mask": torch.ones(2, 8000, dtype=torch.bool), "targets": targets,
            "target_mask": torch.tensor([[True, True, True], [True, True, False]]),
            "speakers": torch.tensor([0, 2])}


def test_forward_runs_the_backbone_once_and_every_head_on_its_features() -> None:
    model, batch = hybrid(), speech_batch()
    calls = []
    model.backbone.register_forward_hook(lambda module, args, output: calls.append(output))
    outputs = model(batch)
    assert len(calls) == 1
    frames = calls[0].tokens.shape[1]
    assert set(outputs) == {"ctc", "seq2seq", "speaker"}
    assert outputs["ctc"]["logits"].shape == (2, frames, VOCAB)
    assert outputs["seq2seq"]["logits"].shape == (2, 4, VOCAB)        # L + 1 (EOS)
    assert outputs["speaker"]["logits"].shape == (2, 3)
    decoded = model.decode(outputs)
    assert set(decoded) == {"ctc", "seq2seq", "speaker"} and len(decoded["speaker"]) == 2


def test_the_loss_is_the_weighted_sum_of_its_named_parts() -> None:
    model, batch = hybrid(ctc=0.3, seq2seq=0.7, speaker=0.5).eval(), speech_batch()   # eval: no dropout
    losses = model.loss(model(batch), batch)
    assert {"loss/ctc", "loss/seq2seq", "loss/speaker", "seq2seq/nll"} <= set(losses)
    assert "weight" not in losses
    expected = 0.3 * losses["loss/ctc"] + 0.7 * losses["loss/seq2seq"] + 0.5 * losses["loss/speaker"]
    torch.testing.assert_close(losses["loss"], expected)
    # each part is the head's own loss on the batch as that head reads it
    single = model.single_head("speaker")
    alone = single.loss(single({**batch, "labels": batch["speakers"]}), {**batch, "labels": batch["speakers"]})
    torch.testing.assert_close(losses["loss/speaker"], alone["loss"])
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.heads["ctc"].parameters())


def test_save_and_load_give_identical_outputs_and_keep_the_heads_apart(tmp_path: Path) -> None:
    model, batch = hybrid(ctc=0.3, seq2seq=0.7).eval(), speech_batch()
    model.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "head" not in config and list(config["heads"]) == ["ctc", "seq2seq", "speaker"]
    assert config["head_weights"] == {"ctc": 0.3, "seq2seq": 0.7, "speaker": 1.0}
    assert config["head_targets"] == {"speaker": {"labels": "speakers"}}
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert {k.split(".")[1] for k in keys if k.startswith("heads.")} == {"ctc", "seq2seq", "speaker"}
    assert all(k.startswith(("backbone.", "heads.")) for k in keys)
    loaded = zoo.load(tmp_path)
    assert isinstance(loaded, MultiHeadModel) and loaded.head_weights == model.head_weights
    with torch.no_grad():
        before, after = model(batch), loaded(batch)
    for name in before:
        torch.testing.assert_close(after[name]["logits"], before[name]["logits"], rtol=0, atol=0)


def test_a_single_head_model_keeps_its_config_format_and_old_checkpoints_load(tmp_path: Path) -> None:
    old = zoo.load(format1_folder())       # the folder format-1 code saved (tests/format1_fixture.py)
    assert type(old) is zoo.ZooModel and old.head.labels == ["negative", "positive"]
    old.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert list(config) == ["format_version", "backbone", "head", "task", "preprocessing", "tokenizer",
                            "tokenizer_kind"]
    expected = json.loads((format1_folder() / "expected.json").read_text())
    ids, mask = old.tokenizer.batch(expected["texts"])
    again = zoo.load(tmp_path)
    assert all(key.startswith(("backbone.", "head.")) for key in again.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again({"inputs": ids, "mask": mask})["logits"], torch.tensor(expected["logits"]),
                                   atol=1e-5, rtol=1e-5)


def test_reset_head_renews_one_head_and_nothing_else() -> None:
    model = hybrid()
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    ctc = {k: v.clone() for k, v in model.heads["ctc"].state_dict().items()}
    old_speaker = model.heads["speaker"]
    model.reset_head("speaker", num_classes=5)
    assert model.heads["speaker"] is not old_speaker
    assert model.heads["speaker"].fc.out_features == 5
    assert model.head_config()["heads"]["speaker"]["args"] == {"num_classes": 5}
    assert all(torch.equal(v, backbone[k]) for k, v in model.backbone.state_dict().items())
    assert all(torch.equal(v, ctc[k]) for k, v in model.heads["ctc"].state_dict().items())
    model.reset_head("ctc")         # the same registry head afresh: new weights
    assert not torch.equal(model.heads["ctc"].proj.weight, ctc["proj.weight"])
    assert model(speech_batch())["speaker"]["logits"].shape == (2, 5)


def test_freeze_the_backbone_or_a_named_head() -> None:
    model = hybrid()
    model.freeze("backbone")
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.heads.parameters())
    model.freeze("ctc")
    assert not any(p.requires_grad for p in model.heads["ctc"].parameters())
    assert all(p.requires_grad for p in model.heads["seq2seq"].parameters())
    model.freeze("backbone", frozen=False)
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_lora_trains_every_head_and_round_trips(tmp_path: Path) -> None:
    model = hybrid()
    zoo.add_lora(model, 2)
    assert all(p.requires_grad for p in model.heads.parameters())
    assert all(p.requires_grad == (".lora_" in f".{n}") for n, p in model.backbone.named_parameters())
    model.eval().save(tmp_path)
    batch = speech_batch()
    with torch.no_grad():
        before, after = model(batch), zoo.load(tmp_path)(batch)
    for name in before:
        torch.testing.assert_close(after[name]["logits"], before[name]["logits"], rtol=0, atol=0)


def test_export_one_named_head_through_the_tasks_export(tmp_path: Path) -> None:
    from tasks.engine.export import Exported
    from tasks.engine.export_command import export

    torch.manual_seed(0)
    model = zoo.create_model("vit_tiny", backbone_args=SMALL_ARGS["image"], task="image_classification",
                             preprocessing={"transform": {"image_size": 32}},
                             heads={"coarse": {"name": "classification", "args": {"num_classes": 2}},
                                    "fine": {"name": "classification", "args": {"num_classes": 5}}}).eval()
    model.save(tmp_path / "model")
    task = zoo.get_task("image_classification")
    with pytest.raises(ZooError, match=r"several heads \(coarse, fine\); pass --head"):
        export(task, str(tmp_path / "model"), "torch-export", tmp_path / "refused")
    export(task, str(tmp_path / "model"), "torch-export", tmp_path / "fine", head="fine")
    exported = Exported(tmp_path / "fine")
    assert exported.sidecar["head"] == "classification" and exported.sidecar["labels"] == [str(i) for i in range(5)]
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)["fine"]["logits"]
    got = torch.from_numpy(exported.run(inputs=images.numpy())["logits"])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_predict_one_named_head_from_the_cli(tmp_path: Path) -> None:
    from PIL import Image

    from tasks.image_classification.transforms import default_transform_config

    model = zoo.create_model("vit_tiny", backbone_args=SMALL_ARGS["image"], task="image_classification",
                             preprocessing={"transform": default_transform_config(32)},
                             heads={"coarse": {"name": "classification", "args": {"num_classes": 2}},
                                    "fine": {"name": "classification", "args": {"num_classes": 5,
                                                                                "labels": list("abcde")}}})
    model.save(tmp_path / "model")
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    task, flags = zoo.get_task("image_classification"), ["--checkpoint", str(tmp_path / "model"), "--device", "cpu",
                                                          "--no-progress", str(tmp_path / "red.png")]
    with pytest.raises(ZooError, match=r"has several heads \(coarse, fine\); pass --head NAME"):
        task.command("predict", flags)
    [prediction] = task.command("predict", [*flags, "--head", "fine"])
    assert prediction["label"] in "abcde" and len(prediction["top"]) >= 2


@pytest.mark.parametrize("build, message", [
    (lambda: hybrid().single_head("decoder"), r"unknown head 'decoder'; this model's heads are ctc, seq2seq, speaker"),
    (lambda: hybrid().reset_head("decoder"), r"unknown head 'decoder'"),
    (lambda: hybrid().freeze("decoder"), r"unknown head 'decoder'"),
    (lambda: hybrid().head, r"several heads \(ctc, seq2seq, speaker\); pick one with model.single_head"),
    (lambda: zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"],
                              heads={"asr": CTC, "topic": {"name": "classification", "args": {"num_classes": 2}}}),
     r"head 'asr': CTCHead accepts audio backbones, not 'text'"),
    (lambda: zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"],
                              heads=[("a", "classification"), ("a", "classification")]),
     r"the name 'a' is given twice"),
    (lambda: zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"],
                              heads={"a": CLASSES}, head_weights={"b": 1.0}),
     r"head_weights names unknown head 'b'; the heads are a"),
    (lambda: zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"],
                              heads={"a": CLASSES}, head_weights={"a": -1}),
     r"head_weights\['a'\] is -1; expected a finite number >= 0"),
    (lambda: zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"],
                              heads={"a": CLASSES}, head_targets={"c": {"labels": "x"}}),
     r"head_targets names unknown head 'c'"),
    (lambda: zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"],
                              heads={"a.b": "classification"}), r"head name 'a.b' must be letters"),
    (lambda: zoo.create_model("text_encoder_tiny", "classification", backbone_args=SMALL_ARGS["text"],
                              heads={"a": "classification"}, num_classes=3), r"either head= .* or heads="),
    (lambda: zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"], heads={"a": "no_such_head"}),
     r"head 'a': .*no_such_head"),
])
def test_bad_heads_are_refused_in_one_line(build, message: str) -> None:
    with pytest.raises(ZooError, match=message):
        build()


def test_a_number_of_heads_is_still_the_seq2seq_heads_attention_argument() -> None:
    model = zoo.create_model("text_encoder_tiny", "seq2seq", backbone_args=SMALL_ARGS["text"], vocab_size=VOCAB,
                             dim=32, depth=1, heads=4)
    assert type(model) is zoo.ZooModel and model.head.zoo_spec["args"]["heads"] == 4


def test_one_module_under_two_names_is_refused() -> None:
    backbone = zoo.create_backbone("text_encoder_tiny", **SMALL_ARGS["text"])
    head = zoo.create_head("classification", backbone, num_classes=2)
    with pytest.raises(ZooError, match="heads 'a' and 'b' are the same module"):
        zoo.create_model(backbone, heads={"a": head, "b": head})


def test_a_saved_config_with_both_head_and_heads_is_refused(tmp_path: Path) -> None:
    model = zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"], heads={"a": CLASSES})
    model.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "head": config["heads"]["a"]}))
    with pytest.raises(ZooError, match="exactly one of the fields 'head' .* and 'heads'"):
        zoo.load(tmp_path)


# ---- the trainer on one data set carrying two targets --------------------------------------------------

def two_target_samples(count: int, seed: int) -> list[dict]:
    """Token rows labelled twice: does token 7 occur (``has_seven``), and the first token mod 3 (``first``)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(4, 12, (count, 6), generator=generator)
    return [{"ids": row, "has_seven": int((row == 7).any()), "first": int(row[0]) % 3} for row in rows]


class TwoTargets(Task):
    """A synthetic text task whose batches carry two targets, one per head."""

    name, modality = "test_multihead_two_targets", "text"
    default_backbone, default_head = "text_encoder_tiny", "classification"     # what the flag checks read
    metric = Metric("accuracy", higher_is_better=True)
    train_defaults = {"batch_size": 32, "lr": 3e-3}

    def datasets(self, spec: str, split: str) -> list[dict]:
        return two_target_samples(256 if split == "train" else 64, 0 if split == "train" else 1)

    def make_collate(self, model, train: bool):
        def collate(samples: list[dict]) -> dict:
            return {"inputs": torch.stack([s["ids"] for s in samples]),
                    "has_seven": torch.tensor([s["has_seven"] for s in samples]),
                    "first": torch.tensor([s["first"] for s in samples])}
        return collate

    def build_model(self, args, train_set) -> MultiHeadModel:
        return zoo.create_model("text_encoder_tiny", backbone_args=SMALL_ARGS["text"], task=self.name,
                                heads={"seven": {"name": "classification", "args": {"num_classes": 2}},
                                       "first": {"name": "classification", "args": {"num_classes": 3,
                                                                                    "pool": "cls"}}},
                                head_weights={"seven": 1.0, "first": 0.5},
                                head_targets={"seven": {"labels": "has_seven"}, "first": {"labels": "first"}})

    @torch.no_grad()
    def evaluate(self, model, dataset, options: EvalOptions) -> dict[str, float]:
        batch = self.make_collate(model, train=False)(dataset)
        outputs = model({k: v.to(next(model.parameters()).device) for k, v in batch.items()})
        right = {name: float((outputs[name]["logits"].argmax(-1).cpu() == batch[key]).float().mean())
                 for name, key in (("seven", "has_seven"), ("first", "first"))}
        return {"accuracy": sum(right.values()) / 2, **{f"accuracy_{k}": v for k, v in right.items()}}


@pytest.fixture
def two_targets() -> Iterator[Task]:
    """The task registered for one test only (the task-contract tests loop over every registered task)."""
    zoo.register_task(TwoTargets.name)(TwoTargets)
    yield zoo.get_task(TwoTargets.name)
    zoo.TASKS._entries.pop(TwoTargets.name, None)      # the registry has no public unregister


def test_the_trainer_lowers_every_part_of_a_two_target_loss(two_targets: Task, tmp_path: Path) -> None:
    task = two_targets
    run = task.command("train", ["--max-steps", "60", "--eval-every", "30", "--out", str(tmp_path / "run"),
                                 "--device", "cpu", "--no-progress", "--seed", "0"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for part in ("train_loss/seven", "train_loss/first", "train_loss"):
        first, last = sum(r[part] for r in rows[:5]) / 5, sum(r[part] for r in rows[-5:]) / 5
        assert last < 0.8 * first, (part, first, last)
    torch.testing.assert_close(torch.tensor(rows[-1]["train_loss"]),
                               torch.tensor(rows[-1]["train_loss/seven"] + 0.5 * rows[-1]["train_loss/first"]))
    assert rows[-1]["val_accuracy_first"] > 0.6 and "val_accuracy_seven" in rows[-1]
    loaded = zoo.load(run)
    assert isinstance(loaded, MultiHeadModel) and set(loaded.heads) == {"seven", "first"}


def test_a_resumed_multi_head_run_repeats_the_uninterrupted_losses(two_targets: Task, tmp_path: Path) -> None:
    import shutil

    flags = ["--device", "cpu", "--no-progress", "--seed", "0", "--max-steps", "12", "--checkpoint-every", "6",
             "--keep", "4", "--accumulate", "2"]
    straight = two_targets.command("train", [*flags, "--out", str(tmp_path / "a")])
    resumed = tmp_path / "b"            # run a as it stood at step 6
    resumed.mkdir()
    shutil.copytree(straight / "step-6", resumed / "step-6")
    shutil.copy(straight / "args.json", resumed / "args.json")
    shutil.copy(straight / "metrics.jsonl", resumed / "metrics.jsonl")
    two_targets.command("train", ["--resume", str(resumed), "--no-progress"])
    for run in (straight, resumed):
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 12
    parts = ("train_loss", "train_loss/seven", "train_loss/first")
    logged = [[[json.loads(line)[p] for p in parts] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (straight, resumed)]
    assert logged[0] == logged[1]
    a, b = (zoo.load(run / "last").state_dict() for run in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
