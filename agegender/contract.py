"""The model contract: what a checkpoint or an exported model means, in one place.

Training writes it (checkpoint metadata), export writes it (ONNX names and metadata_props),
and every reader (the checkpoint loader, `OnnxPredictor`, eval, live) reads it from here, so
no reader imports its names from a writer or the other way round. Plain values only: this
module imports nothing of the project.
"""

from __future__ import annotations

# The package version, recorded in every checkpoint and export (pyproject reads it here).
VERSION = "0.1.0"

# UTKFace labels: gender 0 = male, 1 = female; race 0..4.
GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")

# Checkpoints: Lightning's dict plus this key holding the metadata (format META_FORMAT).
META_KEY = "agegender"
META_FORMAT = 1
LABELS = {
    "age": "years",
    "gender": "p_female = P(female); UTKFace gender 0 = male, 1 = female",
    "race": list(RACES),
    "pixels": "RGB, 0..255, NCHW; normalisation is inside the network",
}

# Exported models: one uint8 input, two outputs, and metadata_props key META_PROP holding the
# checkpoint's metadata as JSON.
META_PROP = META_KEY
INPUT_NAME = "image"
INPUT_TYPE = "tensor(uint8)"
OUTPUT_NAMES = ("age", "p_female")
INPUT_TEXT = "image: uint8 RGB [N, 3, S, S], 0..255 (normalisation is inside)"
OUTPUTS_TEXT = "age: years [N]; p_female: P(female) [N], sigmoid applied"


def label_text(age: float, p_female: float) -> str:
    """`F 27 83%`: gender letter, age in years, confidence of the gender call."""
    female = p_female >= 0.5
    confidence = p_female if female else 1.0 - p_female
    return f"{'F' if female else 'M'} {age:.0f} {confidence:.0%}"
