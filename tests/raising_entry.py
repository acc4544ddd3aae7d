"""Test-only mitmdump entry script: addons/proxyauth.py with scheme parsers and verifiers that can be made to raise.

``tests/test_e2e_gate_faults.py`` writes a target name ("basic.parse",
"digest.verify", ...) into the file named by ``MITM407_RAISE_FLAG``; the
patched function raises ``RuntimeError`` while the file names it, and works
normally otherwise, so one running proxy is tried with each failure in turn.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "addons"))

import mitm407.schemes.basic as basic  # noqa: E402
import mitm407.schemes.digest as digest  # noqa: E402
import mitm407.schemes.ntlm as ntlm  # noqa: E402
from mitm407.entry import all_addons  # noqa: E402

FLAG = Path(os.environ["MITM407_RAISE_FLAG"])


def raising(name, real):
    def maybe_raise(*args, **kwargs):
        try:
            wanted = FLAG.read_text().strip()
        except OSError:
            wanted = ""
        if wanted == name:
            raise RuntimeError(f"fault injected in {name}")
        return real(*args, **kwargs)

    return maybe_raise


basic.parse_basic_credentials = raising("basic.parse", basic.parse_basic_credentials)
basic.BasicScheme.verify = raising("basic.verify", basic.BasicScheme.verify)
digest.parse_auth_params = raising("digest.parse", digest.parse_auth_params)
digest.DigestScheme.verify = raising("digest.verify", digest.DigestScheme.verify)
ntlm.decode_token = raising("ntlm.parse", ntlm.decode_token)
ntlm.NtlmScheme.verify = raising("ntlm.verify", ntlm.NtlmScheme.verify)

addons = all_addons()
