import time

import cv2
import numpy as np
import pytest

from stages.depth import load_depth_backend
from stages.depth.controlnet_aux import ControlnetAuxDepth, ControlnetAuxOptions
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.errors import ModelUnavailableError, UnknownBackendError
from stages.layout import LayoutOptions, place_product


@pytest.fixture
def layout():
    rgb = np.full((300, 200, 3), 90, np.uint8)
    alpha = np.zeros((300, 200), np.uint8)
    cv2.ellipse(alpha, (100, 150), (70, 120), 0, 0, 360, 255, -1)
    return place_product(rgb, alpha, LayoutOptions(width=512, height=512))


def test_geometric_depth_puts_product_in_front_of_its_surroundings(layout):
    d = GeometricDepth(GeometricOptions()).run(layout, 0.62)
    assert d.depth.shape == (512, 512) and d.depth.dtype == np.uint8 and d.backend == "geometric"
    p = layout.placement
    centre = d.depth[p.y + p.height // 2, p.x + p.width // 2]
    beside = d.depth[p.y + p.height // 2, 5]
    assert centre > beside + 20
    # The floor comes nearer towards the bottom; the wall above the horizon is flat and far.
    assert d.depth[-1, 5] > d.depth[int(0.7 * 512), 5] > d.depth[10, 5]
    assert d.depth[10, 5] == d.depth[100, 5]


def test_controlnet_aux_missing_local_checkpoint_names_file_and_fix(tmp_path):
    with pytest.raises(ModelUnavailableError) as info:
        ControlnetAuxDepth.load(ControlnetAuxOptions(model=str(tmp_path)))
    msg = str(info.value)
    assert "dpt_hybrid-midas-501f0c75.pt" in msg and str(tmp_path) in msg and "huggingface-cli download" in msg


def test_controlnet_aux_offline_hub_id_fails_at_once():
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="lllyasviel/Annotators/ZoeD_M12_N.pt is not available.*HF_HUB_OFFLINE"):
        load_depth_backend("controlnet-aux", ControlnetAuxOptions(detector="zoe"))
    assert time.perf_counter() - t0 < 10


def test_unknown_depth_backend():
    with pytest.raises(UnknownBackendError, match="unknown depth backend 'lidar'"):
        load_depth_backend("lidar", GeometricOptions())
