"""The capture entry script inside the installed package (``mitm407 capture`` loads it with ``-s``)."""

from mitm407.capture.addon import Capture

addons = [Capture()]
