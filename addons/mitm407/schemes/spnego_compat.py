"""The one place that imports pyspnego: its private NTLM and SPNEGO primitives.

Why private: pyspnego's public acceptor reads users from a process-wide file
and environment (see ``ntlm_acceptor``), so the NTLM messages, the MS-NLMP
crypto and the SPNEGO tokens come from its internal modules ``spnego._ntlm_raw``
and ``spnego._spnego``. Those can move in any release. Every user imports these
names from here, an import-linter contract (``spnego-shim`` in pyproject.toml)
keeps it so, and tests/test_compat.py checks each name on the installed
pyspnego with a tiny round trip: a release that moves one fails there, loudly,
in one place, and this is the only file to fix.
"""

from __future__ import annotations

from spnego._ntlm_raw.crypto import compute_response_v1, hmac_md5, lmowfv1, ntowfv1, ntowfv2, rc4k
from spnego._ntlm_raw.messages import (
    Authenticate,
    AvFlags,
    AvId,
    Challenge,
    FileTime,
    Negotiate,
    NegotiateFlags,
    NTClientChallengeV2,
    TargetInfo,
    Version,
)
from spnego._spnego import InitialContextToken, NegState, NegTokenInit, NegTokenResp, unpack_token

__all__ = [
    # MS-NLMP crypto
    "compute_response_v1", "hmac_md5", "lmowfv1", "ntowfv1", "ntowfv2", "rc4k",
    # NTLM messages and their fields
    "Authenticate", "AvFlags", "AvId", "Challenge", "FileTime", "Negotiate", "NegotiateFlags",
    "NTClientChallengeV2", "TargetInfo", "Version",
    # SPNEGO (RFC 4178) tokens
    "InitialContextToken", "NegState", "NegTokenInit", "NegTokenResp", "unpack_token",
]
