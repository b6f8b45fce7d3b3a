"""Evaluate a model: `python eval.py ckpt=latest` (saved test split) or `data.root=PATH`."""

from agegender.cli import evaluate

if __name__ == "__main__":
    evaluate()
