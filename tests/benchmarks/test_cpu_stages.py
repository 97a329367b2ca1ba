"""Smoke run of benchmarks/cpu_stages.py at toy sizes: it stages real photos through process_row
and prints the per-step table per source size, the channel line and the key line last."""

from __future__ import annotations

import os
import re

import cv2
import pytest

from conftest import load_benchmark  # tests/ is on sys.path

B = load_benchmark("cpu_stages")


@pytest.fixture
def own_environment():
    """The benchmark points the keys, Prefect and the math libraries at its temp folder and pins
    OpenCV to one thread, for the rest of its process: give the later tests theirs back."""
    env, threads = dict(os.environ), cv2.getNumThreads()
    yield
    os.environ.clear()
    os.environ.update(env)
    cv2.setNumThreads(threads)


def test_a_toy_run_prints_every_step_and_the_key_lines_last(capsys, own_environment):
    assert B.main(["--quick", "--photos", "1", "--sizes", "0.1", "0.3", "--key-mp", "0.3", "--size", "256"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "== sources of 0.1 MP" in out and "== sources of 0.3 MP" in out
    for step in ("load", "matte", "layout", "check", "encode", "sign", "write", "channels"):
        assert re.search(rf"^{step} +\d+\.\d +\d+\.\d$", out, re.M), step
    assert re.fullmatch(r"channel_ms_per_output_mp_0\.3mp=\d+\.\d target <= 60 (PASS|FAIL)", lines[-2])
    assert re.fullmatch(r"master_ms_per_product_0\.3mp=\d+\.\d target <= 250 (PASS|FAIL)", lines[-1])
    assert "statuses {'ok': 1}" in out


def test_the_default_run_measures_catalog_sizes_with_the_key_at_4_mp():
    args = B.parse_args([])
    assert args.sizes == [1.0, 4.0, 12.0] and args.key_mp == 4.0 and args.threads == 1
