"""Kerberos in the Negotiate scheme, without a KDC: scenario checks, the keytab reader, SPNEGO mechanism choice."""

from __future__ import annotations

import base64
import struct
import textwrap
from pathlib import Path

import pytest

from mitm407.core.facts import RequestFacts
from mitm407.core.problems import ScenarioError
from mitm407.core.results import Result
from mitm407.scenario.load import load_scenario, repo_scenario_dir
from mitm407.schemes.keytab import KeytabError, matches, parse_keytab
from mitm407.schemes.spnego_compat import NegState, NegTokenInit, NegTokenResp, unpack_token

SHIPPED_KEYTAB = repo_scenario_dir() / "negotiate-kerberos.keytab"
KERBEROS_OID = "1.2.840.113554.1.2.2"
NTLM_OID = "1.3.6.1.4.1.311.2.2.10"
NTLM_TYPE1 = b"NTLMSSP\x00\x01\x00\x00\x00" + struct.pack("<I", 0x00088207) + b"\x00" * 16


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        load_scenario(path, env={})
    return [str(p) for p in e.value.problems]


def scenario_text(negotiate: str) -> str:
    return "version: 1\nusers: {alice: wonderland}\nschemes: [negotiate]\nnegotiate:\n" + textwrap.indent(
        textwrap.dedent(negotiate), "  "
    )


# -- the keytab reader -------------------------------------------------------------------


def test_shipped_keytab_holds_the_demo_service_key():
    assert parse_keytab(SHIPPED_KEYTAB.read_bytes()) == ("HTTP/localhost@CORP.TEST",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a Kerberos keytab"),
        (b"\x05\x03", "not a Kerberos keytab"),
        (b"\x05\x02\x00\x00\x00\x40\x00\x01", "truncated entry"),
        (b"\x05\x02\x00\x00\x00\x04\x00\x05\x00\x09", "truncated principal name"),
        (b"\x05\x02\x00\x00\x00\x01\x00", "damaged entry"),
    ],
)
def test_keytab_reader_refuses_what_is_not_a_keytab(data, message):
    with pytest.raises(KeytabError, match=message):
        parse_keytab(data)


def test_keytab_reader_skips_holes():
    entry = SHIPPED_KEYTAB.read_bytes()[2:]
    hole = struct.pack(">i", -3) + b"\x00\x00\x00"
    assert parse_keytab(b"\x05\x02" + hole + entry) == ("HTTP/localhost@CORP.TEST",)


def test_principal_without_realm_matches_any_realm_and_case_matters():
    assert matches("HTTP/localhost@CORP.TEST", "HTTP/localhost")
    assert matches("HTTP/localhost@CORP.TEST", "HTTP/localhost@CORP.TEST")
    assert not matches("HTTP/localhost@CORP.TEST", "HTTP/localhost@OTHER.TEST")
    assert not matches("HTTP/localhost@CORP.TEST", "http/localhost")


# -- scenario checks ---------------------------------------------------------------------


def test_missing_keytab_is_named_with_its_place(tmp_path):
    pytest.importorskip("gssapi")
    path = write(tmp_path, scenario_text("kerberos:\n  keytab: nowhere.keytab\n"))
    assert problems(path) == [
        f"{path}:6:13: keytab file not found: {tmp_path / 'nowhere.keytab'} "
        "(mitm407 kdc --scenario FILE --dir DIR writes one)"
    ]


def test_a_keytab_that_is_a_fifo_is_refused_at_once(tmp_path):
    """Read like every file a scenario names: a FIFO would block ``check``, start-up or a reload for good."""
    import os

    pytest.importorskip("gssapi")
    os.mkfifo(tmp_path / "pipe.keytab")
    path = write(tmp_path, scenario_text("kerberos:\n  keytab: pipe.keytab\n"))
    assert problems(path) == [
        f"{path}:6:13: cannot read keytab {tmp_path / 'pipe.keytab'}: a FIFO (named pipe), not a regular file"
    ]


def test_keytab_is_relative_to_the_scenario_file(tmp_path):
    pytest.importorskip("gssapi")
    (tmp_path / "proxy.keytab").write_bytes(SHIPPED_KEYTAB.read_bytes())
    scenario = load_scenario(write(tmp_path, scenario_text("kerberos: {keytab: proxy.keytab}\n")), env={})
    options = scenario.scheme_options["negotiate"]
    assert (options.kerberos.keytab, options.kerberos.principal) == (str(tmp_path / "proxy.keytab"), None)
    assert options.mechanisms == ("kerberos",)  # the default with a keytab


def test_principal_missing_from_the_keytab(tmp_path):
    pytest.importorskip("gssapi")
    text = scenario_text(f"kerberos:\n  keytab: {SHIPPED_KEYTAB}\n  principal: HTTP/proxy.corp.test\n")
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}:7:16: keytab {SHIPPED_KEYTAB} has no key for 'HTTP/proxy.corp.test' (it has: HTTP/localhost@CORP.TEST)"
    ]


def test_bad_mechanism_names_and_keys(tmp_path):
    pytest.importorskip("gssapi")
    (tmp_path / "k.keytab").write_bytes(SHIPPED_KEYTAB.read_bytes())
    text = scenario_text("kerberos: {keytab: k.keytab, principle: x}\nmechanisms: [kerberos, ntml]\n")
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}:5:32: unknown key 'principle' in 'kerberos' (did you mean 'principal'?)",
        f"{path}:6:26: unknown value 'ntml' for 'mechanisms' item (did you mean 'ntlm'?)",
    ]


def test_kerberos_mechanism_needs_a_keytab(tmp_path):
    path = write(tmp_path, scenario_text("mechanisms: [kerberos, ntlm]\n"))
    assert problems(path) == [
        f"{path}:5:15: mechanism 'kerberos' needs a 'kerberos:' section with a keytab "
        "(kerberos: {keytab: proxy.keytab})"
    ]


@pytest.mark.e2e  # starts a process
def test_without_gssapi_check_names_the_extra_in_one_line(tmp_path):
    """A real `mitm407 check` in a Python where `import gssapi` fails."""
    path = write(tmp_path, scenario_text(f"kerberos: {{keytab: {SHIPPED_KEYTAB}}}\n"))
    code = "import sys; sys.modules['gssapi'] = None; from mitm407.cli import main; sys.exit(main(sys.argv[1:]))"
    result = _run_python(code, "check", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:5:13: Kerberos needs the optional dependency python-gssapi (not installed) "
        "(pip install 'mitm407[kerberos]'; python-gssapi builds against Debian's libkrb5-dev)"
    ]
    ntlm_only = _run_python(code, "check", "negotiate-ntlm")
    assert ntlm_only.returncode == 0, ntlm_only.stderr  # the rest works without it


def _run_python(code: str, *args: str):
    import os
    import subprocess
    import sys

    from procs import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


# -- SPNEGO: which mechanism -------------------------------------------------------------


def facts() -> RequestFacts:
    return RequestFacts("GET", "http://x/", "x", 80, "/", "127.0.0.1", "c1")


def negotiate(mechanisms: tuple[str, ...]):
    pytest.importorskip("gssapi")
    from mitm407.schemes.base import SchemeContext
    from mitm407.schemes.kerberos import KerberosOptions
    from mitm407.schemes.negotiate import NegotiateOptions, NegotiateScheme

    options = NegotiateOptions(kerberos=KerberosOptions(str(SHIPPED_KEYTAB)), mechanisms=mechanisms)
    return NegotiateScheme(SchemeContext("CORP", {}, options))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer_token(result) -> NegTokenResp:
    ((name, value),) = result.headers
    assert name == "Proxy-Authenticate" and value.startswith("Negotiate ")
    return unpack_token(base64.b64decode(value.split(" ", 1)[1]))


def test_scenario_preference_selects_kerberos_over_an_ntlm_first_client():
    init = NegTokenInit(mech_types=[NTLM_OID, KERBEROS_OID], mech_token=NTLM_TYPE1).pack()
    result = negotiate(("kerberos", "ntlm")).verify(b64(init), facts())
    assert (result.result, result.reason) == (Result.CONTINUE, "SPNEGO: Kerberos selected")
    reply = answer_token(result)
    assert (reply.neg_state, reply.supported_mech) == (NegState.accept_incomplete, KERBEROS_OID)


def test_ntlm_second_in_preference_still_serves_an_ntlm_only_client():
    init = NegTokenInit(mech_types=[NTLM_OID], mech_token=NTLM_TYPE1).pack()
    result = negotiate(("kerberos", "ntlm")).verify(b64(init), facts())
    assert result.result is Result.CONTINUE and result.reason.startswith("NTLM type 2 challenge sent")
    assert answer_token(result).supported_mech == NTLM_OID


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (NTLM_TYPE1, "NTLM is not among this proxy's Negotiate mechanisms (kerberos)"),
        (
            NegTokenInit(mech_types=[NTLM_OID], mech_token=NTLM_TYPE1).pack(),
            "Negotiate token offers NTLM, none of kerberos",
        ),
        (
            NegTokenResp(response_token=NTLM_TYPE1).pack(),
            "NTLM is not among this proxy's Negotiate mechanisms (kerberos)",
        ),
        (b"\x60\x03\x06\x01\x00", "Negotiate token is neither SPNEGO, Kerberos nor NTLM"),
    ],
)
def test_kerberos_only_refuses_ntlm_and_garbage(token, reason):
    result = negotiate(("kerberos",)).verify(b64(token), facts())
    assert (result.result, result.reason) == (Result.MALFORMED, reason)


def test_a_kerberos_token_the_library_refuses_is_bad_credentials_not_an_exception():
    init = NegTokenInit(mech_types=[KERBEROS_OID], mech_token=b"\x60\x0b\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02")
    result = negotiate(("kerberos",)).verify(b64(init.pack()), facts())
    assert result.result in (Result.BAD_CREDENTIALS, Result.MALFORMED)
    assert result.reason.startswith(("Kerberos token refused: ", "Kerberos token cannot be parsed"))


def test_hostile_tokens_never_raise_and_never_pass():
    """Random bytes, raw and inside a SPNEGO NegTokenInit naming Kerberos, reach the C library's parser."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scheme = negotiate(("kerberos", "ntlm"))
    krb5_header = b"\x60\x82\x01\x00\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01\x00"

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600), st.sampled_from(["raw", "framed", "spnego"]))
    def check(data: bytes, how: str) -> None:
        token = {
            "raw": data,
            "framed": krb5_header + data,
            "spnego": NegTokenInit(mech_types=[KERBEROS_OID], mech_token=krb5_header + data).pack(),
        }[how]
        result = scheme.verify(b64(token), facts())
        assert not result.ok and result.result in (Result.MALFORMED, Result.BAD_CREDENTIALS, Result.CONTINUE)

    check()
