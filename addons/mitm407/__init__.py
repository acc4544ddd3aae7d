"""mitm407: mitmproxy addons for a scriptable authenticating forward proxy."""

__version__ = "0.1.0"
