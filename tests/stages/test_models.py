"""What a backend needs, found without loading anything: packages and model folders."""

from __future__ import annotations

from stages.models import package_requirement, source_requirement


def test_package_requirement_finds_without_importing():
    assert package_requirement("numpy", "pip install numpy").ok
    missing = package_requirement("no_such_package_xyz", "pip install no-such-package")
    assert not missing.ok and missing.fix == "pip install no-such-package"
    assert "'no_such_package_xyz' is not installed" in missing.why


def test_source_requirement_for_local_folders(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    bad = source_requirement("inpainting model", str(folder), "", "model_index.json", "[scene.x].model", "org/model")
    assert not bad.ok and bad.why == f"inpainting model folder {folder} has no model_index.json: not a model folder."
    assert bad.fix == "hf download org/model" and "hf download org/model" in bad.problem
    (folder / "model_index.json").write_text("{}")
    good = source_requirement("inpainting model", str(folder), "", "model_index.json", "[scene.x].model", "org/model")
    assert good.ok and good.found == str(folder)
    gone = source_requirement("VAE", str(tmp_path / "nope"), "", "config.json", "[scene.x].vae")
    assert not gone.ok and "not found (no such file or folder)" in gone.why


def test_a_file_of_a_hub_repo_names_it_in_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    r = source_requirement("midas checkpoint", "lllyasviel/Annotators", "", "dpt_hybrid-midas-501f0c75.pt",
                           "[depth.controlnet_aux].model", filename="dpt_hybrid-midas-501f0c75.pt")
    assert not r.ok and r.fix == "hf download lllyasviel/Annotators dpt_hybrid-midas-501f0c75.pt"
