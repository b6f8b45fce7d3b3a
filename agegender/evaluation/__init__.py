"""Evaluation: metrics by age band, gender and race; pictures; report.md; TensorBoard.

`run.evaluate(model, data_cfg)` is what `eval.py` calls; the parts live in data.py (which
images), metrics.py (numbers), plots.py (pictures) and report.py (files and logs). Nothing is
imported here, so that a caller needing only the metrics does not load plotting.
"""
