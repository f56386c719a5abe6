import pytest

from qlorafx.registry import Registry, UnknownKeyError


@pytest.fixture
def colors() -> Registry[int]:
    reg: Registry[int] = Registry("color")
    reg.register("red")(1)
    reg.register("green")(2)
    reg.register("blue")(3)
    return reg


def test_register_and_get(colors):
    assert colors.get("green") == 2
    assert "red" in colors and "purple" not in colors
    assert colors.keys() == ["blue", "green", "red"]
    assert list(colors) == ["blue", "green", "red"]


def test_register_is_a_decorator_returning_the_entry():
    reg: Registry = Registry("function")

    @reg.register("double")
    def double(x):
        return 2 * x

    assert double(4) == 8  # still the function, not None
    assert reg.get("double") is double


def test_duplicate_registration_is_an_error(colors):
    with pytest.raises(ValueError, match=r"^color 'red' is registered twice$"):
        colors.register("red")(9)
    assert colors.get("red") == 1  # the first entry stays


def test_unknown_key_lists_available_keys_and_suggests_a_close_one(colors):
    with pytest.raises(UnknownKeyError) as info:
        colors.get("gren")
    err = info.value
    assert str(err) == "unknown color 'gren': expected one of blue, green, red; did you mean 'green'?"
    assert (err.kind, err.key, err.available) == ("color", "gren", ["blue", "green", "red"])
    assert isinstance(err, KeyError)


def test_unknown_key_without_a_close_match_has_no_suggestion(colors):
    with pytest.raises(UnknownKeyError) as info:
        colors.get("ultraviolet")
    assert str(info.value) == "unknown color 'ultraviolet': expected one of blue, green, red"
    assert "did you mean" not in str(info.value)


def test_real_registries_are_populated():
    from qlorafx.data.collate import COLLATORS
    from qlorafx.data.formats import FORMATS
    from qlorafx.model.loaders import MODEL_LOADERS
    from qlorafx.train.optimizers import OPTIMIZERS
    from qlorafx.train.schedulers import SCHEDULERS
    from qlorafx.train.trainers import TRAINERS

    assert "alpaca" in FORMATS
    assert {"pretrained", "from_config"} <= set(MODEL_LOADERS)
    assert {"adamw", "paged_adamw_32bit"} <= set(OPTIMIZERS)
    assert {"constant", "cosine", "linear"} <= set(SCHEDULERS)
    assert "pad_to_longest" in COLLATORS
    assert "causal_lm" in TRAINERS
