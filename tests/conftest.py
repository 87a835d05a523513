"""Shared fixtures: offline Hub, small synthetic volumes, a prepared dataset."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

from sam_mito.data.patches import PatchConfig, prepare_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    """Keep `datasets`' cache inside the test session, for this process and its subprocesses."""
    import datasets

    cache = tmp_path_factory.getbasetemp() / "hf-cache" / "datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)


@pytest.fixture(autouse=True)
def _vision_tier(request):
    """A test marked ``vision`` fails at once, naming the tier, where torchvision or timm is missing.

    Such tests run in ``make test-vision``'s environment; the main targets deselect them
    (``-m "not vision"``). They are never skipped, so the vision tier cannot pass without running them.
    """
    if request.node.get_closest_marker("vision") is None:
        return
    import importlib.util

    missing = [name for name in ("torchvision", "timm") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"marked `vision` but {' and '.join(missing)} is not installed here: run `make test-vision` "
            "(or deselect with -m 'not vision')",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory):
    """A small prepared synthetic dataset: 12 training slices of 256x512, test volume of 3 slices."""
    out = tmp_path_factory.mktemp("data") / "patches"
    prepare_dataset(out, synthetic_shape=(12, 256, 512), seed=3, config=PatchConfig(validation_fraction=0.25))
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised tiny SAM (seeded) saved with its processor, as a local checkpoint."""
    import torch
    from transformers import SamModel

    from sam_mito.models.loading import processor_for, tiny_sam_config

    torch.manual_seed(0)
    config = tiny_sam_config()
    out = tmp_path_factory.mktemp("models") / "tiny-random"
    SamModel(config).save_pretrained(out)
    processor_for(config).save_pretrained(out)
    return out


@pytest.fixture
def model_and_split(tiny_model_dir, dataset_dir):
    """The tiny SAM and its processor, loaded afresh for each test, and the dataset's validation split."""
    from sam_mito.data.patches import load_patches
    from sam_mito.models.loading import load_sam

    model, processor = load_sam(str(tiny_model_dir))
    return model, processor, load_patches(dataset_dir, "validation")


@pytest.fixture
def cli(capsys):
    """Run ``sam-mito ARGS...`` in-process; returns (exit status, stdout, stderr).

    argparse rejects a malformed flag value by raising SystemExit(2); that counts as the status.
    """
    from sam_mito.cli.main import main

    def run(*argv):
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exit:
            status = exit.code
        out, err = capsys.readouterr()
        return status, out, err

    return run
