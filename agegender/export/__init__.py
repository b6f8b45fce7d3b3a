"""Export a checkpoint to a deployable file: ONNX (or TorchScript), parity-checked, optional int8.

`export(checkpoint)` is what `export.py` calls; the parts live in graph.py (what is traced),
metadata.py (what the file says about itself), parity.py (proof it answers like PyTorch),
quantize.py (int8 and its report) and speed.py (throughput).
"""

from agegender.deployed import ParityError
from agegender.export.run import ExportResult, export

__all__ = ["ExportResult", "ParityError", "export"]
