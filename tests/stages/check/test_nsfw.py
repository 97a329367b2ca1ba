"""NSFW screening: the embedded open_nsfw model on real photos, the quarantine path through a
whole product run, and the transformers backend with a tiny model built from a config.

No explicit image can live in the repo, so the quarantine path is driven by the real model's
own scores: the threshold is set between the measured scores of two real staged images, and
the one above it must be quarantined while the other is published.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from ops.catalog import read_catalog
from ops.config import load_config
from stages.check.nsfw import is_quarantined, load_nsfw_backend, nsfw_check
from stages.check.nsfw.opennsfw import OpenNsfw, OpennsfwOptions
from stages.check.nsfw.transformers import TransformersNsfw, TransformersNsfwOptions
from stages.errors import ModelUnavailableError, UnknownBackendError

THRESHOLD, REVIEW = 0.5, 0.3  # the shipped [nsfw] thresholds

PRODUCT_PHOTOS = ["19_shoes_black-suede_white.jpg", "22_shoes_strap-sandals_white.jpg",
                  "27_hat_leather-cap_on-white-sheet.jpg", "31_apparel_shorts-on-hanger_white-wall.jpg",
                  "26_apparel_black-dress_on-white-sheet.jpg"]


@pytest.fixture(scope="module")
def opennsfw():
    return OpenNsfw.load(OpennsfwOptions())


def test_real_product_photos_score_safe(opennsfw, images):
    for name in PRODUCT_PHOTOS:
        rgb = np.asarray(Image.open(images / name).convert("RGB"))
        score = opennsfw.score(rgb)
        assert 0.0 <= score < REVIEW, (name, score)
        assert nsfw_check(score, THRESHOLD, REVIEW, opennsfw.label).passed


def test_model_output_depends_on_the_image(opennsfw, images):
    """A flat skin-toned frame scores far higher than a packshot: the score is the model's, not a constant."""
    skin = np.full((256, 256, 3), (205, 140, 115), np.uint8)
    shoe = np.asarray(Image.open(images / PRODUCT_PHOTOS[0]).convert("RGB"))
    assert opennsfw.score(skin) > 5 * opennsfw.score(shoe)


def test_one_thread_scores_as_the_default_session(opennsfw, images):
    """[nsfw.opennsfw] threads pins onnxruntime (one core per worker); the model and its scores stay the same."""
    single = OpenNsfw.load(OpennsfwOptions(threads=1))
    for name in PRODUCT_PHOTOS[:2]:
        rgb = np.asarray(Image.open(images / name).convert("RGB"))
        assert single.score(rgb) == pytest.approx(opennsfw.score(rgb), abs=1e-5)
    assert single._clf._session.get_session_options().intra_op_num_threads == 1


def test_check_levels():
    assert nsfw_check(0.1, 0.6, 0.3, "m").passed
    review = nsfw_check(0.3, 0.6, 0.3, "m")
    assert not review.passed and not review.blocking and not is_quarantined(review)
    quarantined = nsfw_check(0.6, 0.6, 0.3, "m")
    assert not quarantined.passed and quarantined.blocking and is_quarantined(quarantined)


def test_unknown_backend_fails_loudly():
    with pytest.raises(UnknownBackendError, match="nope"):
        load_nsfw_backend("nope", OpennsfwOptions())


def _catalog(tmp, write_catalog):
    path = write_catalog(tmp, "sku,image,title,category,scene_prompt,seed",
                         "SHOE-1,19_shoes_black-suede_white.jpg,Black shoes,shoes,sage green wall,3",
                         "LOAFER-2,20_shoes_beige-loafers_on-beige-floor.jpg,Loafers,shoes,sage green wall,3")
    return {r.sku: r for r in read_catalog(path).rows}


def test_image_over_the_threshold_is_quarantined_never_published(tmp_path, write_catalog, repo, dev_keys):
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    rows = _catalog(tmp_path, write_catalog)
    out = tmp_path / "out"
    base = {"layout": {"width": 384, "height": 384}}
    bench = Workbench.build(load_config(repo / "config.toml", base))
    first = {sku: process_row(bench, row, RunContext(out, "run-1")) for sku, row in rows.items()}
    scores = {}
    for sku, res in first.items():
        assert res.status == "ok", res
        rec = json.loads((out / res.record).read_text())
        scores[sku] = rec["variants"][0]["guards"]["nsfw"]["score"]
        nsfw = next(c for c in rec["checks"] if c["name"] == "nsfw")
        assert nsfw["value"] == pytest.approx(scores[sku], abs=1e-4) and not nsfw["blocking"]
    hi, lo = max(scores, key=scores.get), min(scores, key=scores.get)
    assert scores[hi] > 3 * scores[lo] > 0
    threshold = math.sqrt(scores[hi] * scores[lo])  # between the two real measurements
    cfg = load_config(repo / "config.toml", {**base, "nsfw": {"threshold": threshold, "review_threshold": threshold}})
    bench = Workbench.build(cfg)
    second = {sku: process_row(bench, row, RunContext(out, "run-2")) for sku, row in rows.items()}

    bad = second[hi]
    assert bad.status == "rejected" and bad.verdict == "reject" and bad.output is None
    assert any(r.startswith("nsfw:") and "quarantined" in r for r in bad.reasons), bad.reasons
    folder = (out / bad.record).parent
    assert not list(folder.glob("*.png")) and not list(folder.glob("*.jpg"))  # the earlier publish is gone too
    rec = json.loads((out / bad.record).read_text())
    assert rec["output"] is None and rec["verdict"] == "reject"
    q = out / rec["variants"][0]["quarantined"]
    assert q.is_file() and q.parent.parent.name == "quarantine"
    q_rec = json.loads(q.with_suffix(".json").read_text())
    assert q_rec["sku"] == hi and not next(c for c in q_rec["checks"] if c["name"] == "nsfw")["passed"]
    assert not any((out / "products").rglob(q.name))

    good = second[lo]
    assert good.status == "ok" and (out / good.output).is_file()
    assert not (out / "quarantine" / (out / good.record).parent.name).exists()


# --- transformers backend, with a tiny image classifier built from a config -------------------


def _tiny_classifier(path, labels, bias):
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=37, id2label=dict(enumerate(labels)),
                       label2id={v: k for k, v in enumerate(labels)})
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def _transformers(model, **kw) -> TransformersNsfw:
    return TransformersNsfw.load(TransformersNsfwOptions(model=str(model), device="cpu", **kw))


def test_transformers_backend_loads_a_local_model_and_scores_its_unsafe_label(tmp_path, images):
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = _tiny_classifier(tmp_path / "tiny", ["normal", "nsfw"], [0.0, 0.0])
    backend = _transformers(path)
    rgb = np.asarray(Image.open(images / PRODUCT_PHOTOS[0]).convert("RGB"))
    score = backend.score(rgb)
    # the same number computed independently with the model's own processor
    proc = AutoImageProcessor.from_pretrained(path)
    model = AutoModelForImageClassification.from_pretrained(path).eval()
    with torch.no_grad():
        probs = torch.softmax(model(**proc(images=np.array(rgb), return_tensors="pt")).logits[0], -1)
    assert score == pytest.approx(float(probs[1]), abs=1e-5)
    assert backend.label == f"transformers:{path}"


def test_transformers_unsafe_model_output_quarantines(tmp_path, images):
    path = _tiny_classifier(tmp_path / "tiny", ["safe", "NSFW"], [-6.0, 6.0])  # label case differs from config
    backend = _transformers(path)
    rgb = np.asarray(Image.open(images / PRODUCT_PHOTOS[1]).convert("RGB"))
    check = nsfw_check(backend.score(rgb), THRESHOLD, REVIEW, backend.label)
    assert is_quarantined(check) and check.value > 0.99


def test_transformers_model_without_the_configured_labels_is_refused(tmp_path):
    path = _tiny_classifier(tmp_path / "tiny", ["cat", "dog"], [0.0, 0.0])
    with pytest.raises(ModelUnavailableError, match=r"labels \['cat', 'dog'\].*nsfw_labels"):
        _transformers(path)


def test_transformers_missing_model_names_it_and_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError) as err:
        TransformersNsfw.load(TransformersNsfwOptions(model="acme/nsfw-detector-x"))
    msg = str(err.value)
    assert "acme/nsfw-detector-x" in msg and "HF_HUB_OFFLINE" in msg and "hf download acme/nsfw-detector-x" in msg
