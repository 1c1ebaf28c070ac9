"""Text-to-motion evaluation (HumanML3D / KIT-ML): the evaluator, its inputs, the protocol."""

from .evaluator import T2MEvaluator, random_checkpoint

__all__ = ["T2MEvaluator", "random_checkpoint"]
