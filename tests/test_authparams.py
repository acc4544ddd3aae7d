"""RFC 9110 §11 auth-param parsing: the inputs clients and proxies get wrong."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitm407.wire.authparams import (
    AuthParamError,
    Challenge,
    format_challenge,
    format_param,
    parse_auth_params,
    parse_challenges,
    parse_credentials,
    quote_string,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('realm="a, b", nonce=xyz', {"realm": "a, b", "nonce": "xyz"}),  # quoted comma
        (r'realm="say \"hi\"", x=1', {"realm": 'say "hi"', "x": "1"}),  # escaped quotes
        (r'realm="back\\slash"', {"realm": "back\\slash"}),
        (r'realm="\a\b"', {"realm": "ab"}),  # quoted-pair of any VCHAR
        ('  realm = "r" ,  nonce=n  ', {"realm": "r", "nonce": "n"}),  # BWS and OWS
        ('REALM="r", NoNcE=n', {"realm": "r", "nonce": "n"}),  # names are case-insensitive
        ('realm="r",,, ,nonce=n,', {"realm": "r", "nonce": "n"}),  # empty list elements
        ('realm=""', {"realm": ""}),
        ('realm="tab\there"', {"realm": "tab\there"}),
        ('realm="jürgen"', {"realm": "jürgen"}),  # obs-text
        ("algorithm=SHA-512-256-sess", {"algorithm": "SHA-512-256-sess"}),
    ],
)
def test_parse_auth_params(text, expected):
    assert parse_auth_params(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('realm="unterminated', "unterminated quoted string"),
        ('realm="ends with backslash\\', "ends with a backslash"),
        ('realm="a", REALM="b"', "parameter 'realm' appears twice"),
        ("realm=", "expected a parameter"),
        ('realm="a" nonce="b"', "unexpected 'n' after parameter 'realm'"),
        ('realm="a\r\nX-Injected: 1"', "control character 0x0d"),
        ('realm="a", =b', "unexpected '='"),
        ("nonce", "expected a parameter"),
        ('realm="' + "x" * 5000 + '"', "parameter value too long"),
        ("x" * 20000, "header value too long"),
        (", ".join(f"p{i}=1" for i in range(65)), "more than 64 parameters"),
    ],
)
def test_parse_auth_params_rejects(text, message):
    with pytest.raises(AuthParamError, match=message.replace("\\", "\\\\").replace("(", r"\(")):
        parse_auth_params(text)


def test_parse_challenges_splits_on_scheme_names_not_commas():
    header = 'Digest realm="a, b", qop="auth, auth-int", nonce=abc, Basic realm="x\\"y", Newauth abc==, Foo'
    assert parse_challenges(header) == [
        Challenge("Digest", None, {"realm": "a, b", "qop": "auth, auth-int", "nonce": "abc"}),
        Challenge("Basic", None, {"realm": 'x"y'}),
        Challenge("Newauth", "abc==", {}),
        Challenge("Foo", None, {}),
    ]


def test_parse_challenges_several_header_lines_are_one_list():
    lines = ['Digest realm="r", algorithm=SHA-256', 'Digest realm="r", algorithm=MD5', "Basic realm=r"]
    parsed = parse_challenges(lines)
    assert [(c.scheme, c.params.get("algorithm")) for c in parsed] == [
        ("Digest", "SHA-256"),
        ("Digest", "MD5"),
        ("Basic", None),
    ]


def test_parse_credentials_token68_and_params():
    assert parse_credentials("Basic YWxhZGRpbjpvcGVuc2VzYW1l") == Challenge("Basic", "YWxhZGRpbjpvcGVuc2VzYW1l", {})
    assert parse_credentials("Negotiate abc=") == Challenge("Negotiate", "abc=", {})
    assert parse_credentials('Digest username="u", nc=00000001') == Challenge(
        "Digest", None, {"username": "u", "nc": "00000001"}
    )
    with pytest.raises(AuthParamError, match="more than one scheme"):
        parse_credentials("Basic abc, Digest x=1")
    with pytest.raises(AuthParamError, match="expected an authentication scheme"):
        parse_credentials('"quoted"')


def test_builders_round_trip():
    value = 'a "quoted", back\\slash'
    built = format_challenge("Digest", [format_param("realm", value), format_param("algorithm", "MD5", quoted=False)])
    assert built == 'Digest realm="a \\"quoted\\", back\\\\slash", algorithm=MD5'
    assert parse_challenges(built) == [Challenge("Digest", None, {"realm": value, "algorithm": "MD5"})]
    with pytest.raises(AuthParamError):
        quote_string("line\nbreak")
    with pytest.raises(AuthParamError):
        format_param("algorithm", "not a token", quoted=False)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(list('ab=," \\\t\r\x7fé') + ["Digest ", "realm"]), max_size=40).map("".join))
def test_any_input_parses_or_raises_the_domain_error(text):
    for parse in (parse_challenges, parse_credentials, parse_auth_params):
        with contextlib.suppress(AuthParamError):
            parse(text)


@given(st.text(alphabet=st.characters(min_codepoint=0x20, blacklist_characters="\x7f"), max_size=60))
def test_quote_string_round_trips(value):
    assert parse_auth_params(format_param("p", value)) == {"p": value}
