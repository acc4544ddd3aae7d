"""Contract tests for the two shims over private dependency APIs, on the installed versions.

``mitm407.schemes.spnego_compat`` (pyspnego's ``_ntlm_raw``/``_spnego``) and
``mitm407.proxy.mitmproxy_compat`` (mitmproxy's ``net.http.http1`` and
``addons.upstream_auth``) re-export what the code uses. A new pyspnego or mitmproxy
release that moves or changes one of them fails here, by name, before any scheme
or relay test fails in a confusing way. Known answers for the NTLM crypto are
the test vectors of MS-NLMP section 4.2.2 (user "User", domain "Domain",
password "Password").
"""

from __future__ import annotations

import ast
import hmac
from pathlib import Path

import pytest
import spnego
from mitmproxy import http

from mitm407.proxy import mitmproxy_compat
from mitm407.schemes import spnego_compat as raw  # pyspnego's _ntlm_raw and _spnego, through the shim

REPO = Path(__file__).resolve().parent.parent
NTLM_OID = "1.3.6.1.4.1.311.2.2.10"
KERBEROS_OID = "1.2.840.113554.1.2.2"
SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")

# Modules of dependencies that are not their documented API: only the shims import them.
PRIVATE_MODULES = ("mitmproxy.net", "mitmproxy.addons.upstream_auth")
SHIMS = {
    REPO / "addons" / "mitm407" / "schemes" / "spnego_compat.py",
    REPO / "addons" / "mitm407" / "proxy" / "mitmproxy_compat.py",
}


@pytest.mark.parametrize("shim", [raw, mitmproxy_compat], ids=lambda m: m.__name__)
def test_every_reexported_name_exists(shim):
    missing = [name for name in shim.__all__ if getattr(shim, name, None) is None]
    assert not missing, f"{shim.__name__}: the installed release no longer has {missing}"


# -- pyspnego: MS-NLMP crypto --------------------------------------------------------------


def test_ntlm_one_way_functions_match_ms_nlmp_vectors():
    assert raw.lmowfv1("Password").hex() == "e52cac67419a9a224a3b108f3fa6cb6d"
    assert raw.ntowfv1("Password").hex() == "a4f49c406510bdcab6824ee7c30fd852"
    assert raw.ntowfv2("User", raw.ntowfv1("Password"), "Domain").hex() == "0c868a403bfd7a93a3001ef22ef02e3f"


def test_ntlmv1_response_matches_ms_nlmp_vector():
    nt, lm, _key = raw.compute_response_v1(
        0, raw.ntowfv1("Password"), raw.lmowfv1("Password"), SERVER_CHALLENGE, b"\xaa" * 8, no_lm_response=False
    )
    assert nt.hex() == "67c43011f30298a2ad35ece64f16331c44bdbed927841f94"
    assert lm.hex() == "98def7b87f88aa5dafe2df779688a172def11c7d5ccdef13"


def test_hmac_md5_and_rc4k():
    assert raw.hmac_md5(b"key", b"data") == hmac.new(b"key", b"data", "md5").digest()
    sealed = raw.rc4k(b"k" * 16, b"session key 1234")
    assert sealed != b"session key 1234" and raw.rc4k(b"k" * 16, sealed) == b"session key 1234"


# -- pyspnego: NTLM messages ---------------------------------------------------------------


def test_negotiate_message_from_pyspnego_client_unpacks():
    type1 = spnego.client("u", "p", hostname="proxy", service="HTTP", protocol="ntlm").step()
    assert raw.Negotiate.unpack(type1).flags & raw.NegotiateFlags.ntlm


def test_challenge_round_trip_with_target_info_and_version():
    info = raw.TargetInfo()
    info[raw.AvId.nb_domain_name] = "DOMAIN"
    info[raw.AvId.timestamp] = raw.FileTime.now()
    flags = raw.NegotiateFlags.ntlm | raw.NegotiateFlags.target_type_domain | raw.NegotiateFlags.target_info
    packed = raw.Challenge(flags, SERVER_CHALLENGE, "DOMAIN", info, raw.Version(10, 0, 17763)).pack()
    back = raw.Challenge.unpack(packed)
    assert back.server_challenge == SERVER_CHALLENGE and back.target_name == "DOMAIN"
    assert back.target_info[raw.AvId.nb_domain_name] == "DOMAIN" and back.version.major == 10


def test_authenticate_and_client_challenge_round_trip():
    info = raw.TargetInfo({raw.AvId.nb_computer_name: "PC"})
    blob = raw.NTClientChallengeV2(raw.FileTime.now(), b"c" * 8, info).pack()
    assert raw.NTClientChallengeV2.unpack(blob).av_pairs[raw.AvId.nb_computer_name] == "PC"
    flags = raw.NegotiateFlags.ntlm | raw.NegotiateFlags.unicode
    packed = raw.Authenticate(flags, b"", b"\x01" * 16 + blob, "DOMAIN", "user", "PC").pack()
    back = raw.Authenticate.unpack(packed)
    assert (back.user_name, back.domain_name, back.nt_challenge_response[16:]) == ("user", "DOMAIN", blob)


# -- pyspnego: SPNEGO tokens ---------------------------------------------------------------


def test_spnego_tokens_round_trip():
    init = raw.unpack_token(raw.NegTokenInit(mech_types=[NTLM_OID], mech_token=b"type1").pack())
    assert isinstance(init, raw.NegTokenInit) and init.mech_types == [NTLM_OID] and init.mech_token == b"type1"
    resp = raw.unpack_token(raw.NegTokenResp(raw.NegState.accept_incomplete, NTLM_OID, b"type2").pack())
    assert isinstance(resp, raw.NegTokenResp) and resp.neg_state == raw.NegState.accept_incomplete
    assert (resp.supported_mech, resp.response_token) == (NTLM_OID, b"type2")


def test_gss_initial_context_token_round_trip():
    """How Negotiate tells a Kerberos token from NTLM: ``unpack_token(unwrap=True)`` -> this_mech."""
    packed = raw.InitialContextToken(KERBEROS_OID, b"\x01\x00ap-req").pack()
    token = raw.unpack_token(packed, unwrap=True)
    assert isinstance(token, raw.InitialContextToken)
    assert (token.this_mech, token.inner_context_token) == (KERBEROS_OID, b"\x01\x00ap-req")


# -- mitmproxy internals -------------------------------------------------------------------


def test_parse_upstream_auth_makes_a_basic_header():
    assert mitmproxy_compat.parse_upstream_auth("ben:pa:ss") == b"Basic YmVuOnBhOnNz"


def test_read_response_head():
    head = [b"HTTP/1.1 407 Proxy Authentication Required", b"Proxy-Authenticate: Basic realm=x", b"Via: 1.1 up"]
    response = mitmproxy_compat.read_response_head(head)
    assert (response.status_code, response.reason) == (407, "Proxy Authentication Required")
    assert response.headers["Proxy-Authenticate"] == "Basic realm=x" and response.headers["via"] == "1.1 up"


@pytest.mark.parametrize(
    ("version", "headers", "closed"),
    [("HTTP/1.1", {}, False), ("HTTP/1.1", {"Connection": "close"}, True), ("HTTP/1.0", {}, True),
     ("HTTP/1.0", {"Connection": "keep-alive"}, False)],
)
def test_connection_close(version, headers, closed):
    assert mitmproxy_compat.connection_close(version, http.Headers(**headers)) is closed


# -- nobody else imports the private modules -----------------------------------------------


def private_imports(path: Path) -> list[str]:
    """``path:line module`` for each import of a dependency's private or internal module."""
    hits = []
    text = path.read_text()
    if "mitmproxy" not in text and "spnego" not in text:
        return hits
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(is_private(name) for name in names):
            hits.append(f"{path.relative_to(REPO)}:{node.lineno} {names[0]}")
    return hits


def is_private(module: str) -> bool:
    parts = module.split(".")
    if parts[0] not in ("mitmproxy", "spnego"):
        return False
    return any(p.startswith("_") and not p.startswith("__") for p in parts) or module.startswith(PRIVATE_MODULES)


def test_scanner_flags_private_imports(tmp_path):
    assert [is_private(m) for m in ("spnego._spnego", "mitmproxy.net.http.http1", "mitmproxy.http", "spnego")] == [
        True, True, False, False,
    ]
    assert is_private("mitmproxy.proxy.layers.http._hooks") and not is_private("mitm407._x")


def test_only_the_shims_import_private_dependency_modules():
    """import-linter guards ``spnego`` for the package; this also covers tests/, bench/ and mitmproxy's internals."""
    files = [p for d in ("addons", "tests", "bench") for p in (REPO / d).rglob("*.py") if p not in SHIMS]
    assert [hit for path in files for hit in private_imports(path)] == []


class Bare:
    """An addon with no hook of its own."""


def test_offered_hooks_are_called_and_what_they_return_is_awaited():
    """``offer_hook``: mitmproxy calls a hook set on the instance, awaits what it returns, and stops once withdrawn."""
    import asyncio

    from mitmproxy.proxy.layers.http import HttpRequestHook
    from mitmproxy.test import taddons, tflow

    addon, ran = Bare(), []

    async def later() -> None:
        ran.append("awaited")

    mitmproxy_compat.offer_hook(addon, "request", lambda flow: ran.append("called") or later())
    with taddons.context(addon) as tctx:

        async def invoke() -> None:
            await tctx.master.addons.invoke_addon(addon, HttpRequestHook(tflow.tflow()))

        asyncio.run(invoke())
        assert ran == ["called", "awaited"]
        mitmproxy_compat.offer_hook(addon, "request", None)
        asyncio.run(invoke())
        assert ran == ["called", "awaited"]  # withdrawn: not called again


# -- mitmproxy: the built-in ProxyAuth addon made inert (proxy/socks5.py) -----------------------------


def test_neutralised_builtin_proxyauth_validates_and_stores_nothing():
    from types import SimpleNamespace

    from mitmproxy.addons.proxyauth import ProxyAuth, SingleUser
    from mitmproxy.proxy.layers.modes import Socks5AuthData

    builtin = ProxyAuth()
    builtin.validator = SingleUser("u:p")
    master = SimpleNamespace(addons=SimpleNamespace(get=lambda name: builtin if name == "proxyauth" else None))
    assert mitmproxy_compat.neutralise_builtin_proxyauth(master)
    data = Socks5AuthData(SimpleNamespace(), "u", "p")  # a client stand-in: only a weak-referenceable key
    builtin.socks5_auth(data)
    assert not data.valid and not list(builtin.authenticated)
    absent = SimpleNamespace(addons=SimpleNamespace(get=lambda name: None))
    assert not mitmproxy_compat.neutralise_builtin_proxyauth(absent)
