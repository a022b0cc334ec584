"""keras_mdr.validation: each check accepts what it promises, in a canonical
type, and refuses the rest with `Expected ... Received: name=value`."""

import numpy as np
import pytest

from keras_mdr import validation


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_positive_int_accepts_and_returns_python_int(value):
    result = validation.positive_int(value, "batch_size")
    assert result == int(value) and type(result) is int


@pytest.mark.parametrize("value", [0, -1, 1.0, 2.5, True, False, "3", None, np.float32(2)])
def test_positive_int_refuses(value):
    with pytest.raises(ValueError, match=r"Expected `batch_size` to be a positive int\. "
                       r"Received: batch_size="):
        validation.positive_int(value, "batch_size")


def test_non_negative_int():
    assert validation.non_negative_int(0, "version") == 0
    with pytest.raises(ValueError, match="Received: version=-1"):
        validation.non_negative_int(-1, "version")


@pytest.mark.parametrize("value", [1e-4, 3, np.float32(0.5)])
def test_positive_float_accepts(value):
    result = validation.positive_float(value, "learning_rate")
    assert result == pytest.approx(float(value)) and type(result) is float


@pytest.mark.parametrize("value", [0.0, -1, float("nan"), float("inf"), "0.1", True, None])
def test_positive_float_refuses(value):
    with pytest.raises(ValueError, match=r"Expected `learning_rate` to be a finite number > 0\. "
                       r"Received: learning_rate="):
        validation.positive_float(value, "learning_rate")


def test_non_negative_float():
    assert validation.non_negative_float(0, "weight_decay") == 0.0
    with pytest.raises(ValueError, match="Received: weight_decay=-0.1"):
        validation.non_negative_float(-0.1, "weight_decay")


@pytest.mark.parametrize(
    "value, expected",
    [("1,2,4", (1, 2, 4)), (" 1, 2 ,4 ", (1, 2, 4)), ("8,", (8,)), ("", ()),
     ([1, 2], (1, 2)), ((np.int64(5),), (5,))],
)
def test_int_list_parses(value, expected):
    assert validation.int_list(value, "recall_ks") == expected


@pytest.mark.parametrize("value", ["40;60", "1,,2", "a,b", "1.5", [1.5], 3])
def test_int_list_refuses_malformed(value):
    with pytest.raises(ValueError, match=r"Expected `lr_decay_epochs` .*Received: lr_decay_epochs="):
        validation.int_list(value, "lr_decay_epochs")


def test_int_list_minimum():
    with pytest.raises(ValueError, match=r"Expected every value of `recall_ks` to be >= 1\. "
                       r"Received: recall_ks='0,1'"):
        validation.int_list("0,1", "recall_ks")
    assert validation.int_list("0,1", "epochs", minimum=0) == (0, 1)
    assert validation.int_list("-3,0", "levels", minimum=None) == (-3, 0)


def test_choice_suggests_closest():
    assert validation.choice("hard", "base_loss", ("semihard", "hard")) == "hard"
    with pytest.raises(ValueError, match=r"did you mean 'semihard'\?\)\. Received: base_loss='semihrad'"):
        validation.choice("semihrad", "base_loss", ("semihard", "hard", "distance_weighted"))
    with pytest.raises(ValueError) as error:
        validation.choice("zzz", "base_loss", ("semihard", "hard"))
    assert "did you mean" not in str(error.value)


def test_size_pair_and_range_pair():
    assert validation.size_pair(224, "image_size") == (224, 224)
    assert validation.size_pair((32, 48), "image_size") == (32, 48)
    for bad in (0, (1, 0), (1, 2, 3), 2.0, True):
        with pytest.raises(ValueError, match="Received: image_size="):
            validation.size_pair(bad, "image_size")
    assert validation.range_pair((0.16, 1), "scale", 0.0, 1.0) == (0.16, 1.0)
    for bad in ((0.0, 1.0), (0.5, 0.4), (0.5, 1.5), (0.5,), "ab"):
        with pytest.raises(ValueError, match="Received: scale="):
            validation.range_pair(bad, "scale", 0.0, 1.0)


def test_crop_sizes_returns_pairs_and_refuses_a_crop_larger_than_the_resize():
    assert validation.crop_sizes(32, (36, 40)) == ((32, 32), (36, 40))
    assert validation.crop_sizes((36, 40), (36, 40)) == ((36, 40), (36, 40))
    for image_size, resize_size in ((37, 36), ((32, 41), 40)):
        with pytest.raises(ValueError, match=r"Expected `image_size` no larger than `resize_size`\. "
                           r"Received: image_size=\(\d+, \d+\), resize_size="):
            validation.crop_sizes(image_size, resize_size)
    with pytest.raises(ValueError, match=r"Expected `resize_size` to be a positive int or a pair"):
        validation.crop_sizes(4, 0)
