"""The judge of benchmarks/verdict_eval.py: IoU and stray parts against a reference cut-out, and
the figures drawn from the judged photos."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from conftest import load_benchmark  # tests/ is on sys.path



V = load_benchmark("verdict_eval")


def _disc(shape, centre, r):
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, centre, r, 1, -1)
    return m.astype(bool)


def test_a_cut_out_equal_to_the_reference_is_good():
    ref = _disc((300, 300), (150, 150), 80)
    iou, largest, share = V.judge_cut(ref.copy(), ref)
    assert (iou, largest, share) == (1.0, 0, 0.0)


def test_a_detached_piece_beyond_the_tolerance_is_a_stray_part_by_its_size():
    ref = _disc((300, 300), (150, 150), 80)  # area ~20,100 px: 0.2% is ~40 px
    for side, stray in ((5, False), (8, True)):  # 25 px and 64 px squares, far from the product
        cut = ref.copy()
        cut[10:10 + side, 10:10 + side] = True
        _, largest, share = V.judge_cut(cut, ref)
        assert largest == side * side and (share > V.STRAY_SHARE) is stray
    # a rim 4 px wide all around the reference lies within the 6 px tolerance: no stray part
    grown = _disc((300, 300), (150, 150), 84)
    assert V.judge_cut(grown, ref)[1] == 0
    # a slab 20 px deep under the product, joined to it: the part beyond 6 px is one stray part
    slab = ref.copy()
    slab[228:250, 100:200] = True
    _, largest, share = V.judge_cut(slab, ref)
    assert largest > 0.7 * 100 * 16 and share > V.STRAY_SHARE


def test_figures_count_pass_precision_and_review_recall():
    J = V.Judged
    judged = [J("a", "ok", "pass", [], iou=0.99), J("b", "ok", "pass", [], iou=0.97, stray_share=0.01),
              J("c", "ok", "review", [], iou=0.5), J("d", "failed", "failed", ["empty cut-out"]),
              J("e", "ok", "pass", [], iou=0.92)]
    f = V.figures(judged)
    assert (f["pass"], f["pass_good"]) == (3, 1)  # b has a stray part, e is only fair
    assert (f["bad"], f["bad_not_pass"]) == (3, 2)  # b passed although bad; c and the failed row did not
    assert f["failed"] == 1 and abs(f["pass_precision"] - 1 / 3) < 1e-9


def test_each_photo_gets_the_category_word_of_its_file_name():
    """The word after the leading number, so that checks gated by category (hangers) apply."""
    assert V.category_of("31_apparel_shorts-on-hanger_white-wall.jpg") == "apparel"
    assert V.category_of("e01_dress.jpg") == "dress"
    assert V.category_of("E07_Shoes_red.png") == "shoes"
    assert V.category_of("photo.jpg") == "product" and V.category_of("front_view.jpg") == "product"


def test_the_confidence_table_counts_each_bin_by_cut_out_quality():
    J = V.Judged
    judged = [J("a", "ok", "pass", [], iou=0.99, extra={"matte_confidence": 0.95}),
              J("b", "ok", "pass", [], iou=0.93, extra={"matte_confidence": 1.0}),
              J("c", "ok", "review", [], iou=0.5, extra={"matte_confidence": 0.3}),  # a bin's lower end is in it
              J("d", "ok", "review", [], iou=0.97, extra={"matte_confidence": 0.29}),
              J("e", "failed", "failed", ["empty cut-out"])]
    assert V.calibration(judged) == [["0.0-0.3", "1", "1", "0", "0", "0"], ["0.3-0.5", "1", "0", "0", "1", "0"],
                                     ["0.9-1.0", "2", "1", "1", "0", "2"], ["no cut-out", "1", "0", "0", "1", "0"]]


def test_a_photo_is_resampled_to_the_pixel_count_asked_for_once(tmp_path, images):
    from PIL import Image

    src = images / "19_shoes_black-suede_white.jpg"
    out = V.C.resampled_photo(src, 2.0, tmp_path / "2mp")
    with Image.open(src) as a, Image.open(out) as b:
        assert abs(b.width * b.height / 2e6 - 1) < 0.01 and abs(b.width / b.height - a.width / a.height) < 0.01
    stamp = out.stat().st_mtime_ns
    assert V.C.resampled_photo(src, 2.0, tmp_path / "2mp") == out and out.stat().st_mtime_ns == stamp


def test_the_lower_bound_of_a_precision_is_the_clopper_pearson_one():
    # reference values: scipy.stats.beta.ppf(0.05, k, n - k + 1), the one-sided 95% bound
    assert abs(V.lower_bound(3, 4) - 0.24860) < 1e-4
    assert abs(V.lower_bound(12, 13) - 0.68366) < 1e-4
    assert abs(V.lower_bound(4, 4) - 0.05 ** 0.25) < 1e-9  # all good: (1 - confidence) ** (1 / n)
    assert V.lower_bound(0, 5) == 0.0 and V.lower_bound(0, 0) == 0.0


def test_a_98_percent_precision_takes_149_clean_passes_to_show():
    assert V.passes_needed(0.98) == 149
    assert V.lower_bound(149, 149) >= 0.98 > V.lower_bound(148, 148)
    assert V.lower_bound(60, 60) < 0.98  # a set of 60 photos cannot show it, even all passed clean
    assert "too few passes" in V.precision_line(V.figures([V.Judged("a", "ok", "pass", [], iou=1.0)]))


def test_a_defect_a_person_saw_makes_a_pass_bad_for_that_product_layer_only(tmp_path):
    J = V.Judged
    seen_csv = tmp_path / "seen.csv"
    seen_csv.write_text("photo,matte,product_layer,defect\n"
                        "a.jpg,plain-backdrop,aaaa,\n"
                        "b.jpg,plain-backdrop,bbbb,torn collar\n"
                        "c.jpg,plain-backdrop,old0,\n"  # looked at before the output changed
                        "d.jpg,rembg,dddd,red strip\n", encoding="utf-8")  # another matte's output
    judged = [J("a.jpg", "ok", "pass", [], iou=0.99, product_layer="aaaa"),
              J("b.jpg", "ok", "pass", [], iou=0.99, product_layer="bbbb"),
              J("c.jpg", "ok", "pass", [], iou=0.99, product_layer="cccc"),
              J("d.jpg", "ok", "pass", [], iou=0.99, product_layer="dddd"),
              J("e.jpg", "ok", "review", [], iou=0.5, product_layer="eeee")]
    todo = V.apply_seen(judged, "plain-backdrop", V.read_seen(seen_csv))
    assert [j.seen for j in judged] == ["", "torn collar", None, None, None]
    assert todo == ["c.jpg,plain-backdrop,cccc,", "d.jpg,plain-backdrop,dddd,"]  # passes only
    assert judged[0].good and not judged[1].good and judged[1].bad
    f = V.figures(judged)
    assert (f["pass"], f["pass_good"], f["pass_unseen"], f["bad"], f["bad_not_pass"]) == (4, 3, 2, 2, 1)
    assert "2 pass(es) not looked at" in V.summary_line("plain-backdrop", "set", f)
    # a line printed for a pass is one the file reads back, whatever the photo's name
    odd = [J("front, side.jpg", "ok", "pass", [], iou=0.99, product_layer="ffff")]
    [line] = V.apply_seen(odd, "rembg", {})
    seen_csv.write_text("photo,matte,product_layer,defect\n" + line + "a hook\n", encoding="utf-8")
    assert V.read_seen(seen_csv) == {("front, side.jpg", "rembg", "ffff"): "a hook"}


def test_a_seen_file_without_its_columns_is_refused_by_name(tmp_path):
    bad = tmp_path / "seen.csv"
    bad.write_text("photo,defect\na.jpg,\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="matte, product_layer"):
        V.read_seen(bad)
