"""Text-to-motion evaluation (HumanML3D / KIT-ML), from motions and captions to the table.

* :class:`T2MEvaluator` — the protocol's evaluator networks (``finest.tar``),
  text and motion embeddings (B, 512) in input order;
* :class:`WordVectorizer` — captions' ``word/POS`` tokens as the evaluator's
  inputs (GloVe vectors, POS one-hots, the VIP classes);
* :class:`MotionTextSource` — a HumanML3D / KIT-ML split drawn as the protocol
  draws it (random captions and crops, evaluator normalization, zero padding);
* :func:`evaluate` — the protocol's replications on a generator, summarised
  with t-intervals (and the protocol's interval), optionally until a tolerance.
"""

from .evaluate import GroundTruthGenerator, MotionEvalResult, evaluate
from .evaluator import T2MEvaluator, random_checkpoint
from .humanml import (
    DATASETS,
    DatasetSpec,
    MotionTextBatch,
    MotionTextSource,
    load_mean_std,
    to_evaluator_space,
)
from .vectorizer import POS_CLASSES, VIP_WORDS, Caption, WordVectorizer, parse_caption_line

__all__ = [
    "DATASETS",
    "POS_CLASSES",
    "VIP_WORDS",
    "Caption",
    "DatasetSpec",
    "GroundTruthGenerator",
    "MotionEvalResult",
    "MotionTextBatch",
    "MotionTextSource",
    "T2MEvaluator",
    "WordVectorizer",
    "evaluate",
    "load_mean_std",
    "parse_caption_line",
    "random_checkpoint",
    "to_evaluator_space",
]
