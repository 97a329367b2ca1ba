"""benchmarks/fidelity_eval.py at a tiny size: the cases it builds and its printout."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stages.check.outline import outside_distance

from conftest import load_benchmark  # tests/ is on sys.path

PHOTOS = ["19_shoes_black-suede_white.jpg", "27_hat_leather-cap_on-white-sheet.jpg"]


fe = load_benchmark("fidelity_eval")


@pytest.fixture(scope="module")
def cfg():
    return fe.base_config(256)


@pytest.fixture(scope="module")
def sources(cfg):
    found, skipped = fe.load_sources(cfg, [fe.IMAGES / p for p in PHOTOS])
    assert not skipped
    return found


@pytest.fixture(scope="module")
def cases(cfg, sources):
    found, notes = fe.clean_cases(cfg, sources, np.random.default_rng(0), prompts_per_photo=1)
    return found


def test_every_background_family_is_built(cases):
    assert {c.background for c in cases} == set(fe.BACKGROUNDS)
    assert all(c.final.shape == (256, 256, 3) for c in cases)
    # a real-photo background is the photo's own pixels, not the procedural sweep
    own = next(c for c in cases if c.background == "own-backdrop")
    assert own.label == own.photo and own.scene.std() > 0


@pytest.mark.parametrize("direction", fe.DIRECTIONS)
@pytest.mark.parametrize("shape", fe.SHAPES)
def test_extensions_leave_the_outline_and_reach_what_they_were_built_to(cfg, cases, sources, direction, shape):
    case = next(c for c in cases if c.background == "procedural")
    limit = cfg.fidelity.expansion_limit
    alpha = case.layout.product_alpha
    dist = outside_distance(alpha)
    ext = fe.extend(case, shape, "flat", direction, 5.0, limit, np.random.default_rng(2),
                    (sources[1].rgb, sources[1].matte.alpha))
    assert ext is not None and ext.region.any()
    assert not (ext.region & (alpha > 0)).any()
    assert dist[ext.region].min() <= 2.0  # attached to the product
    assert 4.0 <= ext.reach <= 12.0, ext.reach  # built for 5x; a wide shape at a convex point reaches further
    ys, _ = np.nonzero(ext.region)
    base = np.nonzero((alpha >= 128).any(axis=1))[0].max()
    if direction == "down":
        assert ys.max() > base  # into the floor, below the product's foot
    if direction == "floor":
        assert ys.min() >= base - 0.05 * 256 and ys.max() <= base  # along the floor line at the foot
    # the product's opaque pixels are untouched
    core = alpha == 255
    assert np.array_equal(ext.image[core], case.final[core])


def test_fills_do_not_come_from_the_product(cfg, cases, sources):
    """The same draw on two different products paints the same colour: nothing is read from the product."""
    limit = cfg.fidelity.expansion_limit
    proc = [c for c in cases if c.background == "procedural"]
    assert len({c.photo for c in proc}) == 2
    colours = []
    for c in proc:
        ext = fe.extend(c, "blob", "flat", "up", 10.0, limit, np.random.default_rng(5))
        inner = ext.region & (outside_distance(c.layout.product_alpha) >= 3)
        colours.append(np.median(ext.image[inner], axis=0))
    assert np.abs(colours[0] - colours[1]).max() <= 3


def test_sample_keeps_extensions_with_their_clean_case(cfg, cases, sources):
    ext = fe.build_extensions(cases, sources, cfg.fidelity.expansion_limit, 1, np.random.default_rng(1))
    assert any(e.fill == fe.REFERENCE_FILL for _, e in ext)
    clean, extended = fe.sample(cases, ext, 8, np.random.default_rng(0))
    assert len(clean) == 2 and len(extended) == 6
    ids = {id(c) for c in clean}
    assert all(id(c) in ids and e.fill != fe.REFERENCE_FILL for c, e in extended)


def test_benchmark_prints_its_tables_and_key_line(capsys):
    rc = fe.main(["--images", str(fe.IMAGES), "--max-photos", "3", "--extensions", "1", "--resegment-cases", "0",
                  "--canvas", "192"])
    out = capsys.readouterr().out
    assert "left out: 15_kitchen_coffee-cup_on-wood.png" in out  # the textured photo goes to review first
    assert "== catalog/images: heuristic" in out and "clean cases (false alarms):" in out
    for axis in ("shape", "fill", "direction", "background"):
        assert f"detected by {axis}" in out
    assert "resegment not run (--resegment-cases 0)" in out and "blind spots:" in out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"heuristic_detection_at_2x_limit\[catalog/images\]=(\d+\.\d)% \((\d+)/(\d+)\) target>=80% "
                     r"with false alarms<=5% (PASS|FAIL)", last)
    assert m, last
    assert int(m.group(3)) > 0 and rc == (0 if m.group(4) == "PASS" else 1)
