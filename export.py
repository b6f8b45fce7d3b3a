"""Export a model: `python export.py ckpt=latest` writes a parity-checked model.onnx."""

from agegender.cli import export

if __name__ == "__main__":
    export()
