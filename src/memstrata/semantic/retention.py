"""The forgetting curve (Ebbinghaus, as used by MemoryBank, Zhong et al. 2024).

    R = exp(-t / S)         retention in (0, 1]
    t = days since the note was last reinforced (its last recall, else the event time
        of its newest source), measured at ``as_of``; never negative
    S = base_days * (1 + importance_gain * importance) * (1 + recall_count)

Strength S grows with every recall and with importance, so a note that is recalled
more, or matters more, decays *slower*. (MemoryBank's published code computes
``exp(-t / 5 * S)``, i.e. ``exp(-(t/5) * S)``: there a stronger memory fades faster.
The test suite pins the direction.)
"""

from __future__ import annotations

import numpy as np

MICROS_PER_DAY = 86_400_000_000


def retention(age_days: np.ndarray | float, importance: np.ndarray | float, recall_count: np.ndarray | float,
              *, base_days: float = 30.0, importance_gain: float = 2.0) -> np.ndarray:
    age = np.maximum(np.asarray(age_days, dtype=np.float64), 0.0)
    strength = base_days * (1.0 + importance_gain * np.asarray(importance, np.float64)) * (
        1.0 + np.asarray(recall_count, np.float64))
    return np.exp(-age / strength)


def retention_at(as_of_micros: int, reinforced_micros: np.ndarray, importance: np.ndarray,
                 recall_count: np.ndarray, *, base_days: float = 30.0) -> np.ndarray:
    age = (as_of_micros - reinforced_micros.astype(np.float64)) / MICROS_PER_DAY
    return retention(age, importance, recall_count, base_days=base_days)
