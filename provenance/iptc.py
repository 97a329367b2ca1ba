"""IPTC digital source types (https://cv.iptc.org/newscodes/digitalsourcetype/) recorded in the credentials."""

from __future__ import annotations

COMPOSITE_SYNTHETIC = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic"
COMPOSITE_TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


def composite_source_type(trained: bool) -> str:
    """The product photo composited onto a background made by a trained model, or by other means
    (a procedural backdrop, a flat colour)."""
    return COMPOSITE_TRAINED if trained else COMPOSITE_SYNTHETIC
