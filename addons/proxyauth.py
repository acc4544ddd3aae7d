"""mitm407 entry script: an authenticating forward proxy driven by a scenario.

    mitmdump -s addons/proxyauth.py [--set scenario=scenarios/NAME.yaml]

mitmproxy puts this folder on sys.path while loading the script, so the
``mitm407`` package beside it imports without installation.
"""

from mitm407.entry import all_addons

addons = all_addons()
