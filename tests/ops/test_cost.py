"""Cost per image: the arithmetic, where stages ran, and the run's totals."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ops.config import load_config
from ops.cost import CostOptions, RunCost, money, product_cost, quantile
from ops.record import ChannelRendition
from ops.usage import Usage, device_of, product_usage
from stages.errors import ConfigError

PRICES = CostOptions(currency="EUR", gpu_per_hour=3.6, cpu_core_per_hour=0.36)  # 1e-6 / 1e-7 per ms


def test_cpu_stages_bill_one_core_and_gpu_stages_the_gpu():
    cost = product_cost({"load": 1000.0, "scene": 2000.0}, {"scene": 2000.0}, {}, PRICES)
    assert cost["stages"] == {"load": pytest.approx(1e-4), "scene": pytest.approx(2e-3)}
    assert cost["total"] == pytest.approx(2.1e-3)
    assert cost["devices"] == {"load": "cpu", "scene": "cuda"} and cost["gpu_ms"] == {"scene": 2000.0}
    assert cost["currency"] == "EUR"


def test_a_stage_partly_on_the_gpu_bills_each_part_and_never_more_than_its_time():
    part = product_cost({"channels": 1000.0}, {"channels": 400.0}, {}, PRICES)
    assert part["total"] == pytest.approx(400 * 1e-6 + 600 * 1e-7)
    capped = product_cost({"scene": 100.0}, {"scene": 5000.0}, {}, PRICES)  # a GPU share above the stage's time
    assert capped["total"] == pytest.approx(100 * 1e-6)


def test_hosted_backends_add_their_price_per_call_and_local_ones_nothing():
    prices = CostOptions(gpu_per_hour=0.0, cpu_core_per_hour=0.0, api_per_call={"procedural": 0.04})
    cost = product_cost({"scene": 10.0}, {}, {"procedural": 3, "geometric": 2}, prices)
    assert cost["api"] == {"procedural": pytest.approx(0.12)}
    assert cost["total"] == pytest.approx(0.12)
    assert cost["calls"] == {"geometric": 2, "procedural": 3}


def test_nothing_staged_costs_nothing():
    assert product_cost({}, {}, {}, PRICES)["total"] == 0.0


def test_run_cost_sums_staged_rows_and_prices_cached_ones_at_zero():
    run = RunCost("EUR")
    for i, total in enumerate([1.0, 2.0, 3.0, 4.0]):
        run.add({"status": "ok", "timings_ms": {"load": 10.0, "scene": 30.0},
                 "cost": {"currency": "EUR", "total": total, "stages": {"load": total / 4, "scene": 3 * total / 4},
                          "api": {}}})
    run.add({"status": "cached", "timings_ms": {"load": 5.0}, "cost": None})
    run.add({"status": "failed", "timings_ms": {}, "error": "boom"})
    s = run.summary()
    assert s["total"] == 10.0 and s["priced_rows"] == 4 and s["unpriced_rows"] == 2
    assert s["per_sku"] == {"mean": 2.5, "median": 2.5, "p90": pytest.approx(3.7)}
    assert [(x["stage"], x["ms"], x["share"], x["cost"]) for x in s["stages"]] == [
        ("scene", 120.0, 0.75, 7.5), ("load", 40.0, 0.25, 2.5)]  # the cached row's time is not counted


def test_quantile_and_money():
    assert quantile([], 0.5) == 0.0 and quantile([5.0], 0.9) == 5.0
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert money(12.345, "USD") == "12.35 USD" and money(0.0123, "USD") == "0.0123 USD"
    assert money(0.0000125, "USD") == "0.000013 USD" and money(0, "EUR") == "0.00 EUR"


def test_devices_from_torch_and_onnxruntime_backends():
    assert device_of(SimpleNamespace(device="cuda:0")) == "cuda"
    assert device_of(SimpleNamespace(device=SimpleNamespace(type="cuda"))) == "cuda"  # a torch.device
    assert device_of(SimpleNamespace(device="cpu")) == "cpu"
    assert device_of(SimpleNamespace(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])) == "cuda"
    assert device_of(SimpleNamespace(providers=["CPUExecutionProvider"])) == "cpu"
    assert device_of(object()) == "cpu"  # an embedded backend


def _rendition(preset: str, fmt: str, scene: dict, scene_ms: float) -> ChannelRendition:
    return ChannelRendition(preset, fmt, None, [1, 1], "", {}, scene, [], [], "pass", [],
                            {"stage": 900.0, "scene": scene_ms})


def test_usage_puts_gpu_steps_and_channel_scenes_on_the_gpu_and_counts_calls():
    parts = SimpleNamespace(matte=SimpleNamespace(name="rembg", providers=["CUDAExecutionProvider"]),
                            depth=SimpleNamespace(name="geometric"),
                            checks=SimpleNamespace(nsfw=SimpleNamespace(device="cpu")), matte_escalation=None)
    cuda_scene = SimpleNamespace(backend="diffusers-sdxl", settings={"device": "cuda"})
    staging = SimpleNamespace(matte=SimpleNamespace(backend="rembg:isnet-general-use"),
                              variants=[SimpleNamespace(scene=cuda_scene), SimpleNamespace(scene=cuda_scene)])
    channels = [_rendition("social", "jpeg", {"backend": "diffusers-sdxl", "device": "cuda"}, 700.0),
                _rendition("social", "webp", {"backend": "diffusers-sdxl", "device": "cuda"}, 700.0),  # same preset
                _rendition("marketplace", "jpeg", {"backend": "flat"}, 0.0)]
    usage = product_usage(parts, staging, channels)
    assert usage.devices == {"matte": "cuda", "scene": "cuda"}
    assert usage.shares_ms == {"channels": 700.0}
    assert usage.calls == {"rembg": 1, "geometric": 2, "diffusers-sdxl": 3}
    timings = {"matte": 50.0, "scene": 4000.0, "check": 80.0, "channels": 2000.0}
    assert usage.gpu_ms(timings) == {"matte": 50.0, "scene": 4000.0, "channels": 700.0}
    assert Usage().gpu_ms(timings) == {}


def test_an_escalated_cut_out_counts_both_backends_and_runs_where_the_second_runs():
    rembg = SimpleNamespace(name="rembg", providers=["CUDAExecutionProvider"])
    parts = SimpleNamespace(matte=SimpleNamespace(name="plain-backdrop"), depth=SimpleNamespace(name="geometric"),
                            checks=SimpleNamespace(nsfw=SimpleNamespace(device="cpu")),
                            matte_escalation=SimpleNamespace(backend=rembg))
    scene = SimpleNamespace(backend="procedural", settings={})
    for details, devices, calls in (({}, {}, {"plain-backdrop": 1}),
                                    ({"escalation": {"used": "rembg:isnet-general-use"}}, {"matte": "cuda"},
                                     {"plain-backdrop": 1, "rembg": 1})):
        staging = SimpleNamespace(matte=SimpleNamespace(backend="plain-backdrop", details=details),
                                  variants=[SimpleNamespace(scene=scene)])
        usage = product_usage(parts, staging)
        assert usage.devices == devices
        assert usage.calls == {**calls, "geometric": 1, "procedural": 1}


def test_cost_config_defaults_and_bad_values(tmp_path):
    cfg = load_config()
    assert cfg.cost.currency == "USD" and cfg.cost.gpu_per_hour > cfg.cost.cpu_core_per_hour > 0
    assert cfg.cost.api_per_call == {}
    priced = load_config(None, {"cost": {"gpu_per_hour": 2, "api_per_call": {"procedural": 0.01}}})
    assert priced.cost.gpu_per_hour == 2.0 and priced.cost.api_per_call == {"procedural": 0.01}
    assert priced.digest() == cfg.digest()  # prices never change an output
    for bad, match in [({"gpu_per_hour": -1.0}, "gpu_per_hour"), ({"currency": "dollars"}, "currency"),
                       ({"api_per_call": {"no-such-backend": 0.1}}, "not a backend name"),
                       ({"api_per_call": {"procedural": -0.5}}, "api_per_call.procedural")]:
        with pytest.raises(ConfigError, match=match):
            load_config(None, {"cost": bad})
