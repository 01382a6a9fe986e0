"""Resume compatibility compares settings, not float bit patterns (a sweep's LR grid from
2**x and the same LR typed as 0.01 differ in the last bit and are the same setting)."""

from muscale.train.checkpoint import _first_difference


def test_last_bit_float_difference_is_the_same_setting():
    assert 2.0**-6.643856189774724 != 0.01  # the grid's value is not bit-equal to 0.01
    old = {"optim": {"lr": 0.01, "betas": [0.9, 0.95]}}
    new = {"optim": {"lr": 0.010000000000000002, "betas": [0.9, 0.95]}}
    assert _first_difference(old, new, "cfg") is None


def test_real_differences_are_still_found():
    assert _first_difference({"lr": 0.01}, {"lr": 0.0101}, "optim") == ("optim.lr", 0.01, 0.0101)
    assert _first_difference({"width": 64}, {"width": 65}, "model") == ("model.width", 64, 65)
    assert _first_difference({"lr": 1e-300}, {"lr": 2e-300}, "optim") is not None
    assert _first_difference({"x": None}, {"x": 0.0}, "m") is not None
