"""`check_backbone`: a bad backbone / weights choice is one line that names the fix."""

import pytest

from keras_mdr.training import encoders


@pytest.mark.parametrize("backbone, expected", [
    ("bn_inception", ".pth state_dict"),
    ("resnet50", ".weights.h5 / .keras"),
])
def test_missing_weights_file_names_the_format_the_backbone_reads(tmp_path, backbone, expected):
    missing = str(tmp_path / "nowhere.bin")
    with pytest.raises(ValueError, match="neither 'imagenet', 'none' nor an existing file") as info:
        encoders.check_backbone(backbone, missing, 224)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
