"""Data types and PyTorch's type-promotion rules.

tinynet's dtypes are NumPy dtype objects (``tinynet.float32 is numpy.dtype('float32')``), so
they work with both NumPy and CuPy. Promotion follows PyTorch, which differs from NumPy in
two places that matter: an integer tensor combined with a float tensor takes the float
tensor's dtype (NumPy would go to float64), and a Python float combined with an integer
tensor gives the default float dtype (float32).
"""
from __future__ import annotations

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
uint8 = np.dtype("uint8")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

_default_float = float32


def get_default_dtype() -> np.dtype:
    """The dtype of tensors made from Python floats (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype) -> None:
    """Set the dtype used for Python floats and float factories: float32 or float64."""
    global _default_float
    dtype = np.dtype(dtype)
    if dtype not in (float32, float64):
        raise TypeError(f"set_default_dtype: only float32 and float64 are supported, got {dtype}")
    _default_float = dtype


def to_dtype(dtype) -> np.dtype:
    """Normalise a dtype given as a dtype, a type or a string ('float32')."""
    if dtype is None:
        return None
    if dtype is bool:
        return bool_
    return np.dtype(dtype)


def is_floating(dtype) -> bool:
    return dtype.kind == "f"


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """PyTorch's promotion of two tensor dtypes: within a category the larger wins; float beats
    integer (keeping the float's own width); any number beats bool."""
    if a == b:
        return a
    if a.kind == "f" and b.kind != "f":
        return a
    if b.kind == "f" and a.kind != "f":
        return b
    return np.promote_types(a, b)


def scalar_result_dtype(tensor_dtype: np.dtype, scalar) -> np.dtype:
    """The dtype of ``tensor op scalar`` for a Python scalar: the tensor's dtype, unless the scalar
    is of a higher category (a float with an integer tensor gives the default float dtype, an int
    with a bool tensor gives int64)."""
    if isinstance(scalar, (bool, np.bool_)):
        return tensor_dtype
    if isinstance(scalar, (float, np.floating)) and tensor_dtype.kind != "f":
        return _default_float
    if isinstance(scalar, (int, np.integer)) and tensor_dtype.kind == "b":
        return int64
    return tensor_dtype
