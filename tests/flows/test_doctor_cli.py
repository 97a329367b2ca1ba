"""`stage doctor` from the command line (table and --json, exit codes) and `stage run`'s summary line."""

from __future__ import annotations

import json

import pytest

from flows.cli import main
from flows.doctor_cli import print_summary
from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED
from ops.config import load_config
from s3_server import s3_server  # noqa: F401  (tests/ is on sys.path)


def test_doctor_json_on_the_default_config_exits_0(tmp_path, repo, dev_keys, capsys):
    assert main(["doctor", "--json", "--config", str(repo / "config.toml"), "--out", str(tmp_path / "out")]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == 0
    names = [r["name"] for r in report["rows"]]
    for expected in ("scene procedural", "GPU", "signing chain", "trust anchors", "timestamp server",
                     "Prefect API", "output folder", "Hugging Face cache"):
        assert expected in names
    assert report["summary"].startswith("doctor: ok (matte plain-backdrop")


def test_doctor_names_missing_models_and_exits_1(tmp_path, dev_keys, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    config = tmp_path / "config.toml"
    config.write_text('[matte]\nbackend = "rembg"\n[scene]\nbackend = "diffusers-sdxl"\n', encoding="utf-8")
    assert main(["doctor", "--config", str(config)]) == EXIT_RUN_FAILED
    out = capsys.readouterr().out
    assert "scene diffusers-sdxl: inpainting model" in out
    assert "fix: hf download diffusers/stable-diffusion-xl-1.0-inpainting-0.1" in out
    assert "rembg.new_session('isnet-general-use')" in out
    assert 'doctor: 4 problems (matte rembg: rembg model isnet-general-use: missing, and 3 more) - run "stage doctor"' \
        in out


@pytest.mark.parametrize("command", [["doctor"], ["review", "list"], ["report", "latest"], ["serve-outputs"],
                                     ["reproduce", "image.png"], ["verify", "image.png"]])
def test_a_bad_config_exits_1_with_its_message(tmp_path, capsys, command):
    """Every command that reads the config says what is wrong with it, in one line, without a traceback."""
    config = tmp_path / "config.toml"
    config.write_text('[scene]\nbackend = "nope"\n', encoding="utf-8")
    assert main([*command, "--config", str(config)]) == EXIT_RUN_FAILED
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and "Traceback" not in err


def test_stage_run_summary_line(tmp_path, dev_keys):
    lines: list[str] = []
    print_summary(load_config(None), str(tmp_path / "out"), lines.append)
    assert lines == ["doctor: ok (matte plain-backdrop, depth geometric, scene procedural, nsfw opennsfw; "
                     "0 missing, 1 warning)"]
    (tmp_path / "file").write_text("x")
    print_summary(load_config(None), str(tmp_path / "file" / "out"), lines.append)
    assert lines[-1] == 'doctor: 1 problem (output folder: fail) - run "stage doctor"'


def test_doctor_on_an_object_store_output_probes_the_bucket(tmp_path, repo, dev_keys, capsys, s3_server,  # noqa: F811
                                                            fresh_stores):
    bucket = s3_server.bucket()
    config = str(repo / "config.toml")
    assert main(["doctor", "--json", "--config", config, "--out", f"s3://{bucket}/nightly"]) == EXIT_OK
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["object store"]["status"] == "ok" and rows["output folder"]["status"] == "ok"  # and its scratch
    assert main(["doctor", "--config", config, "--out", "s3://no-such-bucket-here/nightly"]) == EXIT_RUN_FAILED
    assert "no such bucket there?" in capsys.readouterr().out
