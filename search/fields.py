"""pgvector columns written in their exact float32 text form, in half the time of pgvector's own Python."""

import numpy as np
from pgvector.django import VectorField

_FORMATS = {}  # dimension -> "[%.9g,...]"


def exact_text(vector):
    """A vector's text form that pgvector parses back to the very same float32 values: 9 significant digits are enough
    for any float32, where pgvector's Python writes each value's shortest form as a double (for 1,920 floats 0.80
    against 0.38 ms, and half again as much text for PostgreSQL to parse)."""
    values = np.asarray(vector, np.float32).tolist()
    fmt = _FORMATS.get(len(values))
    if fmt is None:
        fmt = _FORMATS[len(values)] = "[" + ",".join(["%.9g"] * len(values)) + "]"
    return fmt % tuple(values)


class Float32VectorField(VectorField):
    """pgvector's VectorField, writing numpy arrays with exact_text: the indexing pipeline's store thread writes each
    image's signature and visual words (2,176 values) beside the model, and its Python holds the GIL the model needs."""

    def get_prep_value(self, value):
        if isinstance(value, np.ndarray):
            return exact_text(value)
        return super().get_prep_value(value)
