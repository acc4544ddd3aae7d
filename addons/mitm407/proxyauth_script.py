"""The proxy entry script inside the installed package (``mitm407 run`` loads it with ``-s``).

The same addons as ``addons/proxyauth.py`` in a checkout, so pip users need no path.
"""

from mitm407.entry import all_addons

addons = all_addons()
