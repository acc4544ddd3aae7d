"""End to end: the login portal with a real mitmdump, a local origin, curl, requests and headless Chromium.

What a user of a Zscaler/Blue Coat/Squid style portal sees: the first request
is redirected to the login page (curl ``-L`` with a cookie jar follows it),
the form is posted, later requests pass without credentials until the
sign-in expires; a client that expects data reads HTML instead; a wrong
password shows the form again. The password is in no log, hop log or ``-w``
file (the session's secret scan checks the logs too).
"""

from __future__ import annotations

import html
import os
import re
import textwrap
from pathlib import Path

import pytest
import requests

from cdp import start_chromium, stop
from hoplogcheck import read_hop_log, wait_for_record
from procs import CHROMIUM, REPO, advance_clock, curl, free_port, raw_exchange, register_secret

pytestmark = pytest.mark.e2e

USER = "ana"
PASSWORD = register_secret(USER, "Portal-pw 7&x")
LOGIN = "http://login.mitm407.invalid/mitm407/login"


def scenario(tmp: Path, portal: str) -> Path:
    path = tmp / "portal.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        users: {{{USER}: "{PASSWORD}"}}
        portal: {portal}
        rules:
          - {{match: {{path: [/health]}}, auth: none}}
          - {{match: {{path: [/admin]}}, auth: deny}}
        """), encoding="utf-8")
    return path


def start(factory, tmp: Path, portal: str = "{ttl: 600}"):
    """The proxy with a hop log, a ``-w`` file and the control API (``proxy.control_port``) to move its clock."""
    hoplog, flows, control_port = tmp / "hops.jsonl", tmp / "flows.mitm", free_port()
    proxy = factory(options={"scenario": str(scenario(tmp, portal)), "hoplog": str(hoplog),
                             "control_port": str(control_port)},
                    extra=["-w", str(flows)])
    proxy.wait_for_log("control API on")
    proxy.hoplog, proxy.flows, proxy.control_port = hoplog, flows, control_port
    return proxy


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def body_of(result) -> str:
    return result.stdout.rsplit("\n", 1)[0]


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of the login form (next, sig), as a browser would post them."""
    return {m[0]: html.unescape(m[1]) for m in re.findall(r'name="(next|sig)" value="([^"]*)"', page)}


def post_form(proxy, fields: dict[str, str], password: str, *args: str):
    data = ["--data-urlencode", f"username={USER}", "--data-urlencode", f"password={password}"]
    for key, value in fields.items():
        data += ["--data-urlencode", f"{key}={value}"]
    return curl("-x", proxy.url, *data, *args, LOGIN)


def test_curl_follows_the_portal_then_passes_by_ip_until_ttl(mitmdump_factory, origin, tmp_path):
    proxy = start(mitmdump_factory, tmp_path, "{ttl: 600, by: ip}")
    jar = str(tmp_path / "jar")
    url = origin.url("/data?x=1")
    first = curl("-x", proxy.url, "-i", url)  # no -L: the redirect itself
    assert status_of(first) == 302
    assert f"Location: {LOGIN}?next=" in first.stdout
    followed = curl("-x", proxy.url, "-L", "-c", jar, "-b", jar, url)  # -L: lands on the form
    assert status_of(followed) == 200 and 'id="mitm407-login"' in body_of(followed)
    fields = form_fields(body_of(followed))
    assert fields["next"] == url
    seen_before = len(origin.seen)
    done = post_form(proxy, fields, PASSWORD, "-L", "-c", jar, "-b", jar)
    assert status_of(done) == 200 and '"origin": "ok"' in body_of(done)  # 303 back to next, then the data
    assert len(origin.seen) == seen_before + 1
    assert "proxy-authorization" not in origin.seen[-1].headers
    again = curl("-x", proxy.url, origin.url("/other"))
    assert status_of(again) == 200 and '"path": "/other"' in body_of(again)
    assert status_of(curl("-x", proxy.url, origin.url("/admin"))) == 403  # rules still apply
    record = wait_for_record(proxy.hoplog, lambda r: r["path"] == "/other")
    assert record["auth"]["scheme"] == "portal" and record["auth"]["user"] == USER
    advance_clock(proxy.control_port, 599)
    assert status_of(curl("-x", proxy.url, origin.url("/other"))) == 200  # still inside the ttl
    advance_clock(proxy.control_port, 2)  # past the ttl: signed out again, nobody sleeps
    assert status_of(curl("-x", proxy.url, origin.url("/other"))) == 302


def test_a_client_that_expects_data_reads_the_html_login_page(mitmdump_factory, origin, tmp_path):
    """postmanlabs/postman-app-support#3001: JSON expected, an HTML sign-in page received."""
    proxy = start(mitmdump_factory, tmp_path)
    proxies = {"http": proxy.url}
    raw = requests.get(origin.url("/api/items"), proxies=proxies, allow_redirects=False, timeout=10)
    assert raw.status_code == 302 and raw.headers["Content-Type"].startswith("text/html")
    assert "<form" in raw.text
    followed = requests.get(origin.url("/api/items"), proxies=proxies, timeout=10)  # requests follows the 302
    assert followed.status_code == 200 and followed.headers["Content-Type"].startswith("text/html")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        followed.json()
    health = requests.get(origin.url("/health"), proxies=proxies, timeout=10)  # a bypass rule: no portal
    assert health.json()["origin"] == "ok"


def test_wrong_password_shows_the_form_again_and_signs_nobody_in(mitmdump_factory, origin, tmp_path):
    proxy = start(mitmdump_factory, tmp_path)
    page = body_of(curl("-x", proxy.url, "-L", origin.url("/data")))
    wrong = register_secret(USER, "not-the-password")
    result = post_form(proxy, form_fields(page), wrong)
    assert status_of(result) == 200
    assert "Sign-in failed: wrong password for user &#x27;ana&#x27;" in body_of(result)
    assert wrong not in body_of(result)
    assert status_of(curl("-x", proxy.url, origin.url("/data"))) == 302
    forged = post_form(proxy, {"next": "http://evil.example/", "sig": form_fields(page)["sig"]}, PASSWORD, "-i")
    assert status_of(forged) == 200 and "evil.example" not in forged.stdout  # signed in, but no open redirect
    proxy.stop()  # the -w file and the hop log are complete once mitmdump has exited
    written = Path(proxy.flows).read_bytes() + Path(proxy.hoplog).read_bytes()
    assert PASSWORD.encode() not in written and wrong.encode() not in written
    assert b"Portal-pw" not in written
    records = read_hop_log(proxy.hoplog)
    assert any(r["auth"] and r["auth"]["scheme"] == "portal" and r["auth"]["result"] == "bad-credentials"
               for r in records)


def test_by_cookie_the_site_gets_a_cookie_and_only_the_jar_passes(mitmdump_factory, origin, tmp_path):
    proxy = start(mitmdump_factory, tmp_path, "{ttl: 600, by: cookie}")
    jar = str(tmp_path / "jar")
    url = origin.url("/data")
    page = body_of(curl("-x", proxy.url, "-L", "-c", jar, "-b", jar, url))
    done = post_form(proxy, form_fields(page), PASSWORD, "-L", "-c", jar, "-b", jar)
    assert status_of(done) == 200 and '"path": "/data"' in body_of(done)  # hand-off: cookie set, clean URL
    assert "mitm407_portal" in Path(jar).read_text()
    assert status_of(curl("-x", proxy.url, "-b", jar, origin.url("/more"))) == 200
    assert status_of(curl("-x", proxy.url, origin.url("/more"))) == 302  # same IP, no cookie: not signed in


def test_connect_is_refused_with_a_pointer_to_the_portal_then_passes_by_ip(mitmdump_factory, tls_origin, origin,
                                                                           tmp_path):
    proxy = start(mitmdump_factory, tmp_path)
    host = f"127.0.0.1:{tls_origin.port}"
    refused = raw_exchange(proxy.port, [f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()])[0]
    assert refused.startswith(b"HTTP/1.1 407") and LOGIN.encode() in refused  # curl shows no CONNECT body
    page = body_of(curl("-x", proxy.url, "-L", origin.url("/data")))
    post_form(proxy, form_fields(page), PASSWORD)
    passed = curl("-x", proxy.url, "-k", tls_origin.url("/s"))
    assert status_of(passed) == 200


SHIPPED = REPO / "scenarios" / "login-portal.yaml"


def test_shipped_scenario_locks_the_form_after_three_wrong_passwords(mitmdump_factory, origin, tmp_path):
    """scenarios/login-portal.yaml as its header says: /health bypasses, three wrong passwords lock 'demo' (403)."""
    proxy = mitmdump_factory(options={"scenario": str(SHIPPED)})
    assert status_of(curl("-x", proxy.url, origin.url("/health"))) == 200
    login = ["-x", proxy.url, "--data-urlencode", "username=demo"]
    for attempt in range(3):
        wrong = curl(*login, "--data-urlencode", f"password=wrong-{attempt}", LOGIN)
        assert status_of(wrong) == 200 and "Sign-in failed" in body_of(wrong)
    locked = curl(*login, "--data-urlencode", "password=mitm407", LOGIN)
    assert status_of(locked) == 403 and "locked out" in body_of(locked)
    assert status_of(curl("-x", proxy.url, origin.url("/data"))) == 302


# MITM407_PORTAL_SCREENSHOT=docs/assets/portal-login.png: the Chromium test saves the login page there
SCREENSHOT_OUT = Path(os.environ["MITM407_PORTAL_SCREENSHOT"]) if os.environ.get("MITM407_PORTAL_SCREENSHOT") else None


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_headless_chromium_fills_the_form_and_reaches_the_page(mitmdump_factory, origin, tmp_path):
    """A real browser: redirected to the form, fills and submits it, lands on the original URL; signed in by IP."""
    proxy = start(mitmdump_factory, tmp_path)
    proc, page = start_chromium(CHROMIUM, tmp_path / "profile", f"--proxy-server=http://127.0.0.1:{proxy.port}",
                                "--proxy-bypass-list=<-loopback>")  # loopback through the proxy too
    try:
        url = origin.url("/browser?from=chromium")
        page.call("Page.enable")
        page.call("Page.navigate", url=url)
        assert page.wait_for("document.getElementById('mitm407-login') !== null"), page.evaluate("location.href")
        assert page.evaluate("location.href").startswith(LOGIN)
        if SCREENSHOT_OUT:
            page.screenshot(SCREENSHOT_OUT)
        page.evaluate(f"document.getElementById('username').value = {USER!r};"
                      f"document.getElementById('password').value = {PASSWORD!r};"
                      "document.getElementById('sign-in').click(); true")
        assert page.wait_for(f"location.href === {url!r} && document.body.innerText.includes('chromium')"), \
            page.evaluate("location.href") + proxy.log[-3000:]
        assert '"origin": "ok"' in page.evaluate("document.body.innerText")
    finally:
        page.close()
        stop(proc)
    assert status_of(curl("-x", proxy.url, origin.url("/after"))) == 200  # the IP is signed in


def test_a_bcrypt_user_signs_in_through_the_worker_thread(mitmdump_factory, origin, tmp_path):
    """The form's password is checked like Basic: a bcrypt hash off the event loop, then cached."""
    bcrypt = pytest.importorskip("bcrypt")
    (tmp_path / "users.htpasswd").write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    path = tmp_path / "bcrypt.yaml"
    path.write_text("version: 1\nhtpasswd: users.htpasswd\nportal: {ttl: 600}\n", encoding="utf-8")
    proxy = mitmdump_factory(options={"scenario": str(path)})
    page = body_of(curl("-x", proxy.url, "-L", origin.url("/data")))
    assert status_of(post_form(proxy, form_fields(page), "wrong-" + PASSWORD)) == 200
    assert status_of(curl("-x", proxy.url, origin.url("/data"))) == 302
    done = post_form(proxy, form_fields(page), PASSWORD, "-L")
    assert status_of(done) == 200 and '"path": "/data"' in body_of(done)
    assert "slow password check failed" not in proxy.log
