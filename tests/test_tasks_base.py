"""Kind declarations: parameter coercion, validation and retry back-off."""

from __future__ import annotations

import pytest

from swifty_desktop.tasks import Param, ParamError, RetryPolicy, all_kinds, get_kind


def test_params_are_coerced_from_command_line_text() -> None:
    spec = get_kind("sleep")
    assert spec.validate({"seconds": "2.5", "checkpoints": "yes"}) == {
        "seconds": 2.5, "checkpoints": True, "ignore_cancel": False}
    assert spec.validate({}) == {"seconds": 1.0, "checkpoints": False, "ignore_cancel": False}


@pytest.mark.parametrize("param,value,message", [
    (Param("n", "int"), "1.5", "must be a whole number"),
    (Param("n", "int"), True, "must be a whole number"),
    (Param("x", "float"), "nan", "must be a number"),
    (Param("b", "bool"), "maybe", "must be true or false"),
    (Param("c", "choice", choices=("a", "b")), "z", "must be one of a, b"),
    (Param("n", "int", minimum=0), "-1", "must be at least 0"),
    (Param("p", "path"), "  ", "must be a file path"),
])
def test_bad_values_name_the_parameter(param, value, message) -> None:
    with pytest.raises(ParamError, match=message) as info:
        param.coerce(value)
    assert f"'{param.name}'" in str(info.value)


def test_missing_required_parameter_is_named() -> None:
    from swifty_desktop.tasks.base import KindSpec

    spec = KindSpec("k", "K", "x:y", params=(Param("path", "path", required=True,
                                                    help="the CSV file"),))
    with pytest.raises(ParamError, match="needs parameter 'path' \\(the CSV file\\)"):
        spec.validate({})


def test_retry_delay_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=10.0, jitter=0.25)
    assert [policy.delay(n, 0.5) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(1, 0.0) == pytest.approx(0.75)
    assert policy.delay(1, 0.999999) == pytest.approx(1.25, abs=1e-5)


def test_every_kind_describes_itself_and_validates_its_defaults() -> None:
    kinds = all_kinds()
    assert {"noop", "sleep", "fail", "crash", "burn", "write"} <= {k.name for k in kinds}
    for kind in kinds:
        data = kind.describe()
        assert data["name"] == kind.name and data["title"]
        for p in data["params"]:
            assert set(p) >= {"name", "type", "required", "default", "help"}
        if not any(p.required for p in kind.params):
            kind.validate({})
