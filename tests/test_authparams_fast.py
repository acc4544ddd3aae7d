"""The fast path of ``parse_auth_params`` must agree with the careful scanner on every input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitm407.wire.authparams import AuthParamError, _Scanner, _simple_auth_params, parse_auth_params


def scanner_params(text: str, max_params: int = 64, max_value: int = 4096) -> dict[str, str] | str:
    """The scanner alone (what parse_auth_params did before the fast path); an error as its message."""
    scanner = _Scanner(text, max_params, max_value)
    params: dict[str, str] = {}
    try:
        scanner.params(params, first=True)
        scanner.skip_list_separators()
        if not scanner.at_end():
            raise AuthParamError(f"unexpected {scanner.peek()!r} at character {scanner.pos + 1}")
    except AuthParamError as e:
        return str(e)
    return params


def fast_or_error(text: str, **limits: int) -> dict[str, str] | str:
    try:
        return parse_auth_params(text, **limits)
    except AuthParamError as e:
        return str(e)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('username="Mufasa", realm="a, b", uri="/dir/index.html", nc=00000001',
         {"username": "Mufasa", "realm": "a, b", "uri": "/dir/index.html", "nc": "00000001"}),
        ('Realm = "x\\"y\\\\z" ,qop=auth', {"realm": 'x"y\\z', "qop": "auth"}),
        ("", {}),
    ],
)
def test_the_usual_forms_take_the_fast_path(text, expected):
    assert _simple_auth_params(text, 64, 4096) == expected
    assert parse_auth_params(text) == expected


@pytest.mark.parametrize(
    "text",
    ["a=b, a=c", "a=b,,c=d", ", a=b", "a==", 'a="x', "a=b c", 'a="\x01"', "a=b,", "a=" + "x" * 5000],
)
def test_anything_unusual_goes_to_the_scanner(text):
    assert _simple_auth_params(text, 64, 4096) is None
    assert fast_or_error(text) == scanner_params(text)


def test_limits_are_the_scanners():
    assert fast_or_error("a=1, b=2, c=3", max_params=2) == "more than 2 parameters"
    assert fast_or_error('a="123456"', max_value=5) == "parameter value too long (limit 5 characters)"


PIECES = st.sampled_from(['username="bench"', ", ", ",", " ", "\t", 'realm="a, b\\"c"', "nonce=abc", "=", '"',
                          "\\", "x", "qop=auth-int", "é", "\x01", "a = tok"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(PIECES, max_size=8).map("".join))
def test_fast_path_equals_the_scanner(text):
    assert fast_or_error(text) == scanner_params(text)
