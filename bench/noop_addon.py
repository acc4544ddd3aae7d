"""An addon that sees every request and does nothing: mitmproxy's own cost of hosting any such addon.

The benchmark's "noop script" row separates that floor from mitm407's work.
"""


class Noop:
    def requestheaders(self, flow: object) -> None:
        pass


addons = [Noop()]
