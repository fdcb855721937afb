"""Bearer-token auth and the bind-address rule.

Without an API key the server listens on loopback only (127.0.0.1 by default) and says so at
start. A non-loopback ``--host`` without a key is refused (a transcription server open to a
network would serve anyone): give ``--api-key`` (or ``NUE_API_KEY``), or ``--allow-no-key`` when
something in front of it (a load balancer, a private network) does the access control, which
is then warned about at start.
"""

from __future__ import annotations

import hmac
import ipaddress

from nue_core.errors import ConfigError
from nue_core.serve.errors import ApiError

API_KEY_VARIABLE = "NUE_API_KEY"


def check_bearer(header: str | None, api_key: str | None) -> None:
    """Raise a 401 ApiError unless ``header`` is ``Bearer <api_key>`` (any header when no key is set)."""
    if api_key is None:
        return
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ApiError(401, "Incorrect API key provided: send the server's key as 'Authorization: Bearer KEY'",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind_notice(host: str, api_key: str | None, allow_no_key: bool = False) -> str | None:
    """The line to print at start about access, or None; raises ConfigError for an open bind.

    Raises:
        ConfigError: a non-loopback ``host`` without an API key and without ``allow_no_key``.
    """
    if api_key is not None:
        return None
    if is_loopback(host):
        return (f"no API key: listening on {host} only (this machine); set --api-key or {API_KEY_VARIABLE} "
                f"to serve other machines")
    if not allow_no_key:
        raise ConfigError(f"--host {host} would serve the network without an API key: give --api-key (or set "
                          f"{API_KEY_VARIABLE}), or --allow-no-key when a proxy in front does the access control")
    return (f"WARNING: no API key and listening on {host}: anyone who can reach this address can use the server "
            f"(--allow-no-key)")
