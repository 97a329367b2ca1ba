"""benchmarks/learned_matte.py: the missing-weights message, the device path (I/O binding) on the CPU
with a tiny network, and a short run with the real IS-Net weights (marked `models`). No timing is
asserted."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from conftest import load_benchmark  # tests/ is on sys.path
from models import weights_folder

import tiny_onnx  # tests/ is on sys.path

bench = load_benchmark("learned_matte")


def test_without_weights_it_says_where_to_put_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STAGE_TEST_MODELS", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["learned_matte.py"])
    assert bench.main() == 2
    err = capsys.readouterr().err
    assert "isnet-general-use.onnx" in err and "STAGE_TEST_MODELS" in err and "--models" in err


def test_device_path_binds_input_and_output(tmp_path):
    """The GPU measurement's code (sized session, I/O binding, batch) run on the CPU provider."""
    weights = tiny_onnx.install(tmp_path)
    r = bench.device_throughput(weights, 64, 1, "float32", "cpu", runs=2)
    assert r["per_s"] > 0 and r["p90_ms_per_call"] > 0


def test_float16_conversion_retypes_weights_casts_and_io(tmp_path):
    import onnx

    data = bench.to_float16(tiny_onnx.white_keyer())
    model = onnx.load_from_string(data)
    assert {i.data_type for i in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_choose_takes_the_fastest_setting_within_the_iou_budget():
    results = {"1024": {"hand": [0.99, 0.98], "vs_ref": [1.0, 1.0], "times": {4.0: [4.0]}},
               "768": {"hand": [0.99, 0.97], "vs_ref": [0.996, 0.995], "times": {4.0: [2.0]}},  # 0.005 below: in
               "512": {"hand": [0.99, 0.98], "vs_ref": [0.99, 0.99], "times": {4.0: [1.0]}},  # far from 1024's: out
               "384+guided": {"hand": [0.98, 0.97], "vs_ref": [1.0, 1.0], "times": {4.0: [0.5]}}}  # 0.01 below: out
    assert bench.choose(results) == ("768", 2.0)
    del results["768"]
    assert bench.choose(results) == ("1024", 4.0)  # nothing faster within the budget: the reference's own time


@pytest.mark.models
def test_a_short_run_with_the_real_weights_prints_the_key_line(monkeypatch, capsys):
    import cv2

    folder = weights_folder("isnet-general-use.onnx")
    for var in ("OMP_NUM_THREADS", "U2NET_HOME", "HF_HUB_OFFLINE"):  # the run sets them
        monkeypatch.setenv(var, "1" if var in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE") else str(folder))
    threads = cv2.getNumThreads()
    monkeypatch.setattr(sys, "argv", ["learned_matte.py", "--models", str(folder), "--photos", "1", "--sizes", "1",
                                      "--settings", "1024,384+guided", "--workers", "1", "--no-gpu"])
    try:
        assert bench.main() == 0
    finally:
        cv2.setNumThreads(threads)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2].startswith("key figure: ") and "learned_matte_gpu: not run" in "\n".join(out)
    assert re.fullmatch(r"learned_matte_cpu_s_per_photo_per_core=\d+\.\d{3} target <= 1 (PASS|FAIL)", out[-1])
    assert np.isfinite(float(out[-1].split("=")[1].split()[0]))
