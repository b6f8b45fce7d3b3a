"""Evaluation: metrics by age band, gender and race; pictures; report.md; TensorBoard.

`evaluate(model, data_cfg)` is what `eval.py` calls; the parts live in data.py (which images),
metrics.py (numbers), plots.py (pictures) and report.py (files and logs).
"""

from agegender.evaluation.run import EvalResult, evaluate, predict_all

__all__ = ["EvalResult", "evaluate", "predict_all"]
