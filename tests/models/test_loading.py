"""Loading a SAM folder: its processor settings are used, or their absence is said; never guessed over."""

import logging
import shutil

import pytest

from sam_mito.errors import SamMitoError
from sam_mito.models.loading import load_sam, tiny_base_path


@pytest.fixture
def model_dir(tmp_path):
    """A copy of the packaged tiny base: config.json, model.safetensors, processor_config.json."""
    return shutil.copytree(tiny_base_path(), tmp_path / "tiny")


@pytest.mark.parametrize("name", ["processor_config.json", "preprocessor_config.json"])
def test_a_corrupt_processor_config_is_named_not_replaced_by_defaults(model_dir, name):
    (model_dir / "processor_config.json").unlink()
    (model_dir / name).write_text('{"image_processor": {"do_resize": tru')  # cut short
    with pytest.raises(SamMitoError, match=rf"tiny/{name}: not valid JSON \(line 1 column \d+\)"):
        load_sam(str(model_dir))


def test_a_missing_processor_config_is_matched_to_the_model_with_a_warning(model_dir, caplog):
    (model_dir / "processor_config.json").unlink()
    with caplog.at_level(logging.WARNING, logger="sam_mito.models.loading"):
        _, processor = load_sam(str(model_dir))
    assert "has no processor config" in caplog.text
    assert processor.image_processor.pad_size == {"height": 256, "width": 256}
