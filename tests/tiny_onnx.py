"""A tiny segmentation network as an ONNX file, written without the `onnx` package.

It has the interface of rembg's IS-Net session (input `input` float32 [1,3,H,W] normalised as
rgb/max - 0.5, output [1,1,H,W]), so rembg loads and runs it exactly as it runs the real weights:
from `$U2NET_HOME/<model>.onnx`, through onnxruntime, with rembg's own pre- and post-processing.
The network keys out a white backdrop: sigmoid(gain x (sum_c |x_c - 0.5| - threshold)), i.e. a
pixel is product when it is far enough from white. It is good enough to test the glue (a real
photo in, a usable mask out); it is not a model to ship.

The bytes are ONNX's protobuf messages (onnx.proto: ModelProto, GraphProto, NodeProto,
TensorProto, ValueInfoProto) encoded by hand with the wire format's varint and length-delimited
fields.
"""

from __future__ import annotations

import struct
from pathlib import Path


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # int64 fields: negatives as ten-byte two's complement
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _bytes(field: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _float(field: int, x: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", x)


FLOAT = 1  # TensorProto.DataType.FLOAT


def _scalar(name: str, value: float) -> bytes:
    """TensorProto: data_type=2, name=8, raw_data=9 (no dims: a scalar)."""
    return _int(2, FLOAT) + _bytes(8, name) + _bytes(9, struct.pack("<f", value))


def _value_info(name: str, dims: list[int | str]) -> bytes:
    """ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1...}}}}."""
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor = _int(1, FLOAT) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor))


def _node(op: str, inputs: list[str], outputs: list[str], attrs: bytes = b"") -> bytes:
    """NodeProto: input=1, output=2, name=3, op_type=4, attribute=5."""
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    return body + _bytes(3, f"{op}_{outputs[0]}") + _bytes(4, op) + attrs


def _ints_attr(name: str, values: list[int]) -> bytes:
    """AttributeProto: name=1, ints=8, type=20 (INTS=7)."""
    return _bytes(5, _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7))


def _int_attr(name: str, value: int) -> bytes:
    """AttributeProto: name=1, i=3, type=20 (INT=2)."""
    return _bytes(5, _bytes(1, name) + _int(3, value) + _int(20, 2))


def white_keyer(threshold: float = 1.0, gain: float = 40.0) -> bytes:
    """The serialized ModelProto (ir_version=1, graph=7, opset_import=8; opset 11)."""
    nodes = [
        _node("Sub", ["input", "white"], ["d"]),
        _node("Abs", ["d"], ["a"]),
        _node("ReduceSum", ["a"], ["s"], _ints_attr("axes", [1]) + _int_attr("keepdims", 1)),
        _node("Sub", ["s", "threshold"], ["u"]),
        _node("Mul", ["u", "gain"], ["v"]),
        _node("Sigmoid", ["v"], ["output"]),
    ]
    graph = (b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "white-keyer")
             + _bytes(5, _scalar("white", 0.5)) + _bytes(5, _scalar("threshold", threshold))
             + _bytes(5, _scalar("gain", gain))
             + _bytes(11, _value_info("input", [1, 3, "height", "width"]))
             + _bytes(12, _value_info("output", [1, 1, "height", "width"])))
    opset = _bytes(1, "") + _int(2, 11)
    return _int(1, 7) + _bytes(2, "product-staging tests") + _bytes(7, graph) + _bytes(8, opset)


def install(home: Path, model: str = "isnet-general-use") -> Path:
    """Write the tiny network where rembg looks for `model`'s weights under U2NET_HOME."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{model}.onnx"
    path.write_bytes(white_keyer())
    return path
