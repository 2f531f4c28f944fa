"""Every task's baseline (``tasks/<task>/baseline.py`` through ``Task.baseline``) on tiny data sets whose
answer is known by hand, and the baseline columns of `zoo demo`'s table."""
from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import zoo
from tasks.asr import baseline as asr_baseline
from tasks.captioning import baseline as captioning_baseline
from tasks.captioning.evaluation import scores as caption_scores
from tasks.detection import baseline as detection_baseline
from tasks.engine.baselines import FLOOR, logistic_regression_logits
from tasks.engine.demo import table
from tasks.engine.task import Baseline, Task
from tasks.image_classification.formats import ImageArrays
from tasks.sentiment.formats import SentimentDataset
from tasks.text_generation.formats import TextDataset
from tasks.translation.baseline import learn_dictionary, translate_words
from tasks.translation.evaluation import scores
from tasks.translation.formats import TranslationDataset


class Samples(list):
    """A list of sample dicts with the attributes the baselines read (``classes``, ``entries``...)."""

    def __init__(self, samples: list[dict], **attributes: object) -> None:
        super().__init__(samples)
        self.__dict__.update(attributes)


# ---- the hook ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.list_tasks())
def test_every_task_has_a_baseline_module(name: str) -> None:
    task = zoo.get_task(name)
    module = task.companion("baseline")
    assert module == f"tasks.{name}.baseline"


def test_a_task_without_a_baseline_module_gives_none() -> None:
    class Bare(Task):
        name = "bare"

    assert Bare().baseline([], []) is None


def test_the_hook_returns_the_modules_name_and_scores() -> None:
    train = TranslationDataset([("one", "un"), ("two", "deux")], "train")
    test = TranslationDataset([("two one", "deux un")], "test")
    found = zoo.get_task("translation").baseline(train, test)
    assert found == Baseline("word-by-word dictionary", scores(["deux un"], ["deux un"]))


# ---- image classification and sentiment: logistic regression ----------------------------------
def halves(count: int, seed: int) -> ImageArrays:
    """8x8 grey images: class 0 bright on the left half, class 1 on the right, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = rng.integers(0, 60, size=(count, 8, 8), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, :, 4 * label:4 * label + 4] += 180
    return ImageArrays(images, labels, ["left", "right"], "halves")


def test_pixel_logistic_regression_beats_chance_on_separable_images() -> None:
    metrics = zoo.get_task("image_classification").baseline(halves(40, 0), halves(20, 1)).metrics
    assert metrics["top1"] >= 0.95       # chance: 0.5
    assert metrics["per_class_accuracy"].keys() == {"left", "right"}


def test_tfidf_logistic_regression_separates_word_classes() -> None:
    words = {0: ["dull", "awful", "boring"], 1: ["superb", "great", "witty"]}

    def texts(count: int, offset: int) -> SentimentDataset:
        samples = [{"text": f"a {words[i % 2][(i + offset) % 3]} film", "label": i % 2} for i in range(count)]
        return SentimentDataset(samples, ["negative", "positive"], "words")

    metrics = zoo.get_task("sentiment").baseline(texts(30, 0), texts(12, 1)).metrics
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0


def test_a_class_missing_from_training_gets_the_floor_probability() -> None:
    features = np.array([[0.0], [1.0], [0.1], [0.9]])
    logits = logistic_regression_logits(features, np.array([0, 2, 0, 2]), features, num_classes=3)  # (4, 3)
    assert logits.shape == (4, 3)
    assert torch.allclose(logits[:, 1], torch.full((4,), math.log(FLOOR)))
    assert torch.allclose(logits.exp().sum(dim=1), torch.ones(4), atol=1e-6)
    assert logits.argmax(dim=1).tolist() == [0, 2, 0, 2]


# ---- text generation: the character bigram ---------------------------------------------------
def test_bigram_bits_per_char_equals_the_hand_count() -> None:
    train, test = ["ab", "b"], ["ba", "c"]
    # symbols: unknown, boundary "|", "a", "b" (V = 4); training stream | a b | b |
    counts = Counter([("|", "a"), ("a", "b"), ("b", "|"), ("|", "b"), ("b", "|")])
    totals = Counter({"|": 2, "a": 1, "b": 2})

    def p(previous: str, following: str) -> float:
        return (counts[previous, following] + 1) / (totals[previous] + 4)

    # test stream | b a | ? |  ("c" was never seen: the unknown symbol "?")
    nats = -sum(math.log(p(a, b)) for a, b in [("|", "b"), ("b", "a"), ("a", "|"), ("|", "?"), ("?", "|")])
    metrics = zoo.get_task("text_generation").baseline(TextDataset(train, "train"), TextDataset(test, "test")).metrics
    assert metrics["characters"] == 5 == metrics["tokens"]       # len(text) + 1 per document
    assert metrics["bits_per_char"] == pytest.approx(nats / 5 / math.log(2))
    assert metrics["perplexity"] == pytest.approx(math.exp(nats / 5))


# ---- translation: the word dictionary -------------------------------------------------------
def test_the_dictionary_translates_seen_words_and_copies_unknown_ones() -> None:
    pairs = [("one", "un"), ("two", "deux"), ("one two", "un deux"), ("two three", "deux trois")]
    dictionary = learn_dictionary(pairs)
    assert dictionary == {"one": "un", "two": "deux", "three": "trois"}
    assert translate_words(dictionary, "three one four") == "trois un four"


def test_dice_prefers_the_specific_word_over_the_frequent_one() -> None:
    # "and" (4 pairs) is with "cent" in 3 and "et" in 2, but "cent" is in 6 pairs and "et" only in those 2:
    # Dice 2*3/(4+6) = 0.6 for "cent", 2*2/(4+2) = 0.67 for "et"
    pairs = [("hundred and one", "cent un"), ("hundred and two", "cent et deux"), ("three and", "trois et"),
             ("hundred and four", "cent quatre"), *[("hundred", "cent")] * 3]
    assert learn_dictionary(pairs)["and"] == "et"


# ---- detection: the centred boxes -----------------------------------------------------------
def scene(boxes: list[list[float]], labels: list[int], size: tuple[int, int] = (100, 200)) -> dict:
    return {"image": torch.zeros(3, *size, dtype=torch.uint8), "boxes": torch.tensor(boxes),
            "labels": torch.tensor(labels)}


def test_centred_boxes_have_each_class_mean_size_and_share() -> None:
    train = Samples([scene([[0, 0, 20, 10], [0, 0, 60, 30]], [1, 1]), scene([[10, 10, 50, 90]], [0])],
                    classes=["a", "b"])
    classes, means, shares = detection_baseline.class_boxes(train)
    assert classes.tolist() == [0, 1]
    assert torch.allclose(means, torch.tensor([[0.2, 0.8], [0.2, 0.2]]))   # width/200, height/100
    assert torch.allclose(shares, torch.tensor([1 / 3, 2 / 3]))
    boxes = detection_baseline.centred_boxes(means, height=100, width=200)
    assert torch.allclose(boxes, torch.tensor([[80.0, 10, 120, 90], [80, 40, 120, 60]]))


def test_a_centred_object_is_found_and_an_offside_one_missed() -> None:
    train = Samples([scene([[80, 40, 120, 60]], [0])], classes=["a"])
    centred = Samples([scene([[80, 40, 120, 60]], [0])], classes=["a"])
    offside = Samples([scene([[0, 0, 40, 20]], [0])], classes=["a"])
    assert detection_baseline.score(train, centred)["map_50"] == pytest.approx(1.0)
    assert detection_baseline.score(train, offside)["map_50"] == 0.0


# ---- ASR and speech translation: the nearest template --------------------------------------
def chirp(start: float, stop: float, seconds: float, seed: int) -> torch.Tensor:
    """(S,) a tone sweeping from ``start`` to ``stop`` Hz at 16 kHz, with a little noise."""
    t = torch.arange(int(16000 * seconds)) / 16000
    phase = 2 * math.pi * (start * t + (stop - start) * t ** 2 / (2 * seconds))
    return 0.5 * torch.sin(phase) + 0.01 * torch.randn(len(t), generator=torch.Generator().manual_seed(seed))


def clips(spec: list[tuple[float, float, float, str]], seed: int) -> Samples:
    return Samples([{"audio": chirp(a, b, s, seed + i), "text": text} for i, (a, b, s, text) in enumerate(spec)],
                   entries=[SimpleNamespace(text=text) for *_, text in spec])


RISING, FALLING = (300, 3000), (3000, 300)
TRAIN_CLIPS = [(*RISING, 0.6, "rising tone"), (*FALLING, 0.6, "falling tone")]
TEST_CLIPS = [(*FALLING, 0.9, "falling tone"), (*RISING, 0.4, "rising tone")]   # other lengths


def test_each_clip_takes_the_transcript_of_its_nearest_template() -> None:
    train, test = clips(TRAIN_CLIPS, 0), clips(TEST_CLIPS, 10)
    assert asr_baseline.nearest_template_texts(train, test) == ["falling tone", "rising tone"]
    assert zoo.get_task("asr").baseline(train, test).metrics == {"wer": 0.0, "cer": 0.0}


def test_templates_are_an_even_subsample_of_training() -> None:
    train = clips([*TRAIN_CLIPS, (*RISING, 0.6, "other rising"), (*FALLING, 0.6, "other falling")], 0)
    # two of four templates: clips 0 and 2 (both rising), so even the falling test clip is heard as rising
    heard = asr_baseline.nearest_template_texts(train, clips(TEST_CLIPS, 10), templates=2)
    assert len(heard) == 2 and set(heard) <= {"rising tone", "other rising"}


def test_speech_translation_scores_the_templates_translations() -> None:
    train = clips([(*RISING, 0.6, "monte"), (*FALLING, 0.6, "descend")], 0)
    test = clips([(*FALLING, 0.9, "descend"), (*RISING, 0.4, "monte")], 10)
    metrics = zoo.get_task("speech_translation").baseline(train, test).metrics
    assert metrics == scores(["descend", "monte"], ["descend", "monte"]) and metrics["exact_match"] == 1.0


# ---- captioning: the nearest-neighbour caption ----------------------------------------------
def test_captioning_takes_the_caption_of_the_nearest_image() -> None:
    dark, bright = torch.full((3, 40, 40), 10, dtype=torch.uint8), torch.full((3, 40, 40), 240, dtype=torch.uint8)
    train = Samples([{"image": dark, "captions": ["a dark square", "night"]},
                     {"image": bright, "captions": ["a bright square"]}])
    test = Samples([{"image": bright - 5, "captions": ["a bright square"]}, {"image": dark + 5, "captions": ["dark"]}])
    metrics = captioning_baseline.score(train, test)
    assert metrics == caption_scores(["a bright square", "a dark square"], [["a bright square"], ["dark"]])
    assert metrics["exact_match"] == 0.5


# ---- `zoo demo`'s table --------------------------------------------------------------------
def test_the_demo_table_shows_the_baseline_and_whether_the_model_beats_it() -> None:
    results = [
        {"task": "sentiment", "data": "builtin", "metric": "accuracy", "value": 0.81, "higher_is_better": True,
         "train_s": 30.2, "baseline": "tf-idf", "baseline_value": 0.79},
        {"task": "asr", "data": "builtin:digits", "metric": "wer", "value": 0.9, "higher_is_better": False,
         "train_s": 31.0, "baseline": "nearest template", "baseline_value": 0.75},
        {"task": "translation", "data": "builtin:numbers", "metric": "bleu", "value": 40.0, "higher_is_better": True,
         "train_s": 30.0},
        {"task": "detection", "data": "builtin:small", "metric": "map_50", "value": 0.1, "higher_is_better": True,
         "train_s": 30.0, "baseline": "error: no boxes"},
        {"task": "captioning", "data": "-", "metric": "error", "value": "out of memory"},
    ]
    lines = table(results, []).splitlines()
    assert lines[0].split("|")[5:7] == [" baseline ", " beats baseline "]
    assert "| 0.8100 | tf-idf 0.7900 | yes |" in lines[2]
    assert "| 0.9000 | nearest template 0.7500 | no |" in lines[3]     # lower WER is better
    assert "| 40.0000 | - | - |" in lines[4]
    assert "| 0.1000 | error: no boxes | - |" in lines[5]
    assert "| out of memory | - | - |" in lines[6]
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_the_demo_trains_each_task_with_the_seed_it_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """`zoo demo --seed N` (the README's table is the median of seeds 0, 1, 2) reaches `zoo train` as `--seed N`."""
    from tasks.engine import demo

    task = zoo.get_task("sentiment")
    calls: list[tuple[str, list[str]]] = []

    def command(name: str, argv: list[str]) -> dict:
        calls.append((name, argv))
        return {"accuracy": 0.5, "n": 2}

    monkeypatch.setattr(task, "command", command)
    monkeypatch.setattr(demo.zoo, "get_task", lambda name: task)
    result = demo.run_task("sentiment", tmp_path, 5.0, seed=2)
    train_argv = calls[0][1]
    assert calls[0][0] == "train" and train_argv[train_argv.index("--seed") + 1] == "2"
    assert train_argv[train_argv.index("--out") + 1] == str(tmp_path / "sentiment")
    assert result["value"] == 0.5 and calls[1][0] == "eval"
