"""`stage reproduce IMAGE`: what it prints and its exit codes."""

from __future__ import annotations

import json
import shutil

from flows import cli
from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED
from ops.catalog import read_catalog
from ops.config import load_config
from ops.context import RunContext
from ops.runner import process_row
from ops.workbench import Workbench

PHOTO = "22_shoes_strap-sandals_white.jpg"


def test_reproduce_says_identical_and_exits_0_else_says_why_and_exits_1(tmp_path, images, dev_keys, capsys):
    shutil.copy(images / PHOTO, tmp_path / PHOTO)
    (tmp_path / "config.toml").write_text("[layout]\nwidth = 160\nheight = 160\n[renditions]\nactive = []\n",
                                          encoding="utf-8")
    (tmp_path / "catalog.csv").write_text(f"sku,image,title,category,seed\nSANDAL-1,{PHOTO},Sandals,shoes,3\n",
                                          encoding="utf-8")
    (row,) = read_catalog(tmp_path / "catalog.csv").rows
    done = process_row(Workbench.build(load_config(tmp_path / "config.toml")), row, RunContext(tmp_path / "out", "r"))
    master = tmp_path / "out" / done.output

    assert cli.main(["reproduce", str(master)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"{master}: identical: {160 * 160} pixels, bit for bit")

    assert cli.main(["reproduce", str(master), "--json", "--out", str(tmp_path / "again")]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["outcome"] == "identical" and report["staged"].startswith(str(tmp_path / "again"))

    (tmp_path / PHOTO).write_bytes((images / "23_shoes_white-sneakers_on-brown.jpg").read_bytes())
    assert cli.main(["reproduce", str(master)]) == EXIT_RUN_FAILED
    assert "could not reproduce: source photo changed" in capsys.readouterr().out

    assert cli.main(["reproduce", str(tmp_path / "catalog.csv")]) == EXIT_RUN_FAILED
    assert "could not reproduce: content credentials missing or invalid" in capsys.readouterr().out
