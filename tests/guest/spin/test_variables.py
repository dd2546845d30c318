"""Spin variables from the manifest's environment: Spin's name rules, the two spellings looked up."""

from __future__ import annotations

import pytest

from wasmlet.guest._spin import VariableError, Variables


@pytest.mark.parametrize("name", ["a", "api_key", "a1", "x9_y8", "abc_def_ghi"])
def test_valid_names(name: str) -> None:
    with pytest.raises(VariableError) as info:
        Variables([]).get(name)
    assert info.value.kind == "undefined"


@pytest.mark.parametrize(("name", "reason"), [
    ("", "must not be empty"),
    ("API_KEY", "invalid character 'A'"),
    ("invalid-name", "invalid character '-'"),
    ("invalid!name", "invalid character '!'"),
    ("4invalidname", "must start with a lower-case ASCII letter"),
    ("_a", "must start with a lower-case ASCII letter"),
    ("a_", "must end with a lower-case ASCII letter or digit"),
    ("a__b", "must not contain two underscores in a row"),
    ("é", "invalid character 'é'"),
    ("a b", "invalid character ' '"),
])
def test_invalid_names(name: str, reason: str) -> None:
    env = [("API_KEY", "x"), ("SPIN_VARIABLE_API_KEY", "x")]
    with pytest.raises(VariableError, match=reason) as info:
        Variables(env).get(name)
    assert info.value.kind == "invalid-name"


def test_prefixed_spelling_wins_over_the_plain_one() -> None:
    variables = Variables([("API_KEY", "plain"), ("SPIN_VARIABLE_API_KEY", "spin"), ("ONLY_PLAIN", "p")])
    assert variables.get("api_key") == "spin"
    assert variables.get("only_plain") == "p"


def test_lower_case_keys_are_not_variables() -> None:
    variables = Variables([("api_key", "lower"), ("Api_Key", "mixed")])
    with pytest.raises(VariableError, match="set SPIN_VARIABLE_API_KEY or API_KEY") as info:
        variables.get("api_key")
    assert info.value.kind == "undefined"


def test_empty_values_are_defined() -> None:
    assert Variables([("EMPTY", "")]).get("empty") == ""


def test_all_lists_each_variable_once_by_its_spin_name() -> None:
    env = [("SPIN_VARIABLE_A", "1"), ("A", "0"), ("B_C", "2"), ("lower", "no"), ("X__Y", "no"), ("_Z", "no"),
           ("PATH", "/bin"), ("SPIN_VARIABLE_", "no")]
    assert Variables(env).all() == [("a", "1"), ("b_c", "2"), ("path", "/bin")]
