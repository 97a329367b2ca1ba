"""benchmarks/gpu_scene.py: both paths run end to end on tiny models on the CPU, and the real mode
says plainly that it did not run where there is no GPU. No timing is asserted."""

from __future__ import annotations

import re

import pytest

from conftest import load_benchmark  # tests/ is on sys.path

bench = load_benchmark("gpu_scene")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_mode_runs_stock_and_optimised_and_prints_the_key_line(capsys):
    assert bench.main(["--tiny", "--steps", "3", "--runs", "1", "--warmup", "0", "--guidance-end", "0.5"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("stock: diffusers pipeline called plainly") for line in out)
    assert any(line.startswith("optimised: backend with fuse_qkv, channels_last, guidance_end 0.5") for line in out)
    assert any("2 guided steps, 1 conditional-only" in line for line in out)
    assert re.fullmatch(r"gpu_scene_speedup_vs_stock_tiny_cpu=\d+\.\d\d target >= 2 with MFU >= 40% (PASS|FAIL)",
                        out[-1]), out[-1]


def test_fresh_prompts_per_call():
    req = bench.make_request(64, seed=3)
    a, b = bench.fresh(req, 0, 2), bench.fresh(req, 1, 2)
    assert a[0].prompt == a[1].prompt != b[0].prompt
    assert [r.seed for r in a + b] == [3, 4, 5, 6]


def test_without_a_gpu_the_real_mode_says_it_did_not_run(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the real mode would run")
    assert bench.main([]) == 2
    captured = capsys.readouterr()
    assert "no CUDA device" in captured.err
    assert captured.out.strip().splitlines()[-1] == "gpu_scene_speedup_vs_stock=nan target >= 2 with MFU >= 40% NOT RUN"
