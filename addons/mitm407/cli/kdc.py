"""``mitm407 kdc --scenario FILE --dir DIR``: a throwaway Kerberos realm for a Negotiate scenario.

Starts an MIT KDC for CORP.TEST on 127.0.0.1 with the scenario's users as
principals (their scenario passwords become their Kerberos passwords) and
``HTTP/localhost`` as the proxy's service, writes ``krb5.conf``, ``env`` and
``proxy.keytab`` into DIR, prints what to run next, and stops the KDC on
Ctrl-C. The keytab shipped with the ``negotiate-kerberos`` scenario holds the
same service key (see ``mitm407.teach.realm``), so that scenario works with
any realm made here.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from mitm407.core.problems import ScenarioError
from mitm407.scenario.load import load_scenario, resolve_scenario_path
from mitm407.teach.realm import REALM, SERVICE, Realm, RealmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kdc",
        help="start a throwaway Kerberos KDC (realm CORP.TEST) with a scenario's users",
        description="Start a throwaway MIT Kerberos KDC on 127.0.0.1 for a Negotiate/Kerberos scenario. "
        "Ctrl-C stops it.",
    )
    p.add_argument("--scenario", default="negotiate-kerberos", help="scenario file or shipped name")
    p.add_argument("--dir", type=Path, default=None, help="where the realm's files go (default: a new temp dir)")
    p.add_argument("--realm", default=REALM, help=f"realm name (default {REALM})")
    p.add_argument("--port", type=int, default=0, help="KDC port on 127.0.0.1 (default: a free one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = resolve_scenario_path(args.scenario)
    try:
        scenario = load_scenario(path)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 1
    users = scenario.cleartext_passwords()
    if not users:
        print(f"{path}: no user with a cleartext password: Kerberos principals need one", file=sys.stderr)
        return 1
    directory = (args.dir or Path(tempfile.mkdtemp(prefix="mitm407-krb-"))).resolve()
    realm = Realm(directory, users, realm=args.realm, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        realm.start()
    except RealmError as e:
        print(f"mitm407 kdc: {e}", file=sys.stderr)
        return 1
    try:
        print(instructions(realm, path, sorted(users)), flush=True)
        while not stop.wait(1.0):
            if realm.process is not None and realm.process.poll() is not None:
                print(f"mitm407 kdc: krb5kdc exited with {realm.process.returncode}", file=sys.stderr)
                return 1
    finally:
        realm.stop()
    print("mitm407 kdc: KDC stopped", flush=True)
    return 0


def instructions(realm: Realm, scenario: Path, users: list[str]) -> str:
    d = realm.directory
    first = users[0]
    return f"""\
mitm407 kdc: realm {realm.realm} on 127.0.0.1:{realm.port} (TCP and UDP); principals: {', '.join(users)}, {SERVICE}
  files in {d}: krb5.conf, env (KRB5_CONFIG, KRB5CCNAME), proxy.keytab ({SERVICE}), kdc.log
  passwords are the scenario's ({scenario}); not printed

Next, in other terminals:
  1. the proxy:      mitm407 run {scenario} -p 8080
     (the scenario's keytab must hold the {SERVICE} key: the shipped one does; or point
      negotiate.kerberos.keytab at {d / 'proxy.keytab'})
  2. a ticket:       . {d / 'env'}; kinit {first}          # then: klist
  3. a client:       curl --proxy-negotiate -U : -x http://localhost:8080 http://example.com/
                     # 200 with a ticket; after kdestroy: 407 (Negotiate only, no fallback)
     Reach the proxy as "localhost": its key is for {SERVICE}.

Ctrl-C stops the KDC."""
