"""What the tasks' baselines (``tasks/<task>/baseline.py``) share: a logistic regression whose class
log-probabilities stand in for a model's logits, so the task's own metric code scores them."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

MAX_ITERATIONS = 1000       # lbfgs iterations: enough for pixels and TF-IDF features to converge
FLOOR = 1e-12               # the probability of a class the training split never shows


def logistic_regression_logits(train_features: Any, train_labels: np.ndarray, test_features: Any,
                               num_classes: int) -> torch.Tensor:
    """(N_test, ``num_classes``) float log-probabilities of a multinomial logistic regression (scikit-learn,
    L2, C=1) fit on (N_train, F) features (dense or sparse) and their (N_train,) class ids."""
    # slow import: only when a baseline runs
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=MAX_ITERATIONS).fit(train_features, train_labels)
    probabilities = np.full((test_features.shape[0], num_classes), FLOOR)
    probabilities[:, model.classes_] = np.maximum(model.predict_proba(test_features), FLOOR)
    return torch.from_numpy(np.log(probabilities)).float()
