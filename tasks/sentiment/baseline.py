"""The sentiment baseline: TF-IDF of word unigrams and bigrams + logistic regression (`zoo demo`).

scikit-learn's ``TfidfVectorizer`` (lower-cased words, 1-2 grams, sublinear term frequencies) learns
its vocabulary on the training texts; the logistic regression's class log-probabilities are scored
by the task's own :func:`metrics`, as a model's logits are.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tasks.engine.baselines import logistic_regression_logits
from tasks.engine.evaluation import label_mapping
from tasks.sentiment.evaluation import metrics

NAME = "tf-idf 1-2 grams + logistic regression"


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's metrics of the TF-IDF logistic regression fit on ``train``, on ``test``."""
    # slow import: only when it runs
    from sklearn.feature_extraction.text import TfidfVectorizer

    classes = list(train.classes)
    train_samples = [train[i] for i in range(len(train))]
    test_samples = [test[i] for i in range(len(test))]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    features = vectorizer.fit_transform([s["text"] for s in train_samples])        # (N, F) sparse
    labels = np.array([s["label"] for s in train_samples], dtype=np.int64)
    logits = logistic_regression_logits(features, labels, vectorizer.transform([s["text"] for s in test_samples]),
                                        len(classes))
    mapping = label_mapping(list(test.classes), classes, getattr(test, "source", "data set"))
    target = mapping[torch.tensor([s["label"] for s in test_samples], dtype=torch.long)]
    return metrics(logits, target, classes)
