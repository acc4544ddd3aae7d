"""mitm407 capture script: record the upstream proxy's authentication as a replay scenario.

    mitmdump --mode upstream:http://PROXY:PORT -s addons/capture.py --set capture_output=corp.yaml

``python -m mitm407 capture --upstream http://PROXY:PORT -o corp.yaml`` runs exactly this.
"""

from mitm407.capture.addon import Capture

addons = [Capture()]
