"""mitm407 hop log entry script: which hop answered each flow, in any mitmproxy run.

    mitmdump -s addons/hoplog.py --set hoplog=hops.jsonl [--set hop_name=edge]

Needs no scenario and no authentication; ``addons/proxyauth.py`` already
includes it (loading both scripts still gives one hop log).
"""

from mitm407.entry import hoplog_addons

addons = hoplog_addons()
