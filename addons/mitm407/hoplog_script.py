"""The hop log entry script inside the installed package (``mitm407 chain`` loads it for hops without a scenario).

The same addon as ``addons/hoplog.py`` in a checkout, so pip users need no path.
"""

from mitm407.entry import hoplog_addons

addons = hoplog_addons()
