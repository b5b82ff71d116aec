"""API keys: ``Authorization: Bearer KEY``, compared in constant time.

Keys come from ``EMBEDFLEET_API_KEYS``. With none configured the gateway refuses to
start unless told ``--no-auth`` and bound to a loopback address
(:func:`check_startup`), so an open gateway is never on the network by accident.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request

from gateway.errors import APIError
from tasks.contract.errors import ConfigError


class KeyCheck:
    """The FastAPI dependency that lets a request in or answers 401."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def open(self) -> bool:
        return not self._keys

    def __call__(self, request: Request) -> None:
        if self.open:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(
                401,
                "no API key given: send 'Authorization: Bearer KEY' (EMBEDFLEET_API_KEYS)",
                "invalid_api_key",
            )
        candidate = given.strip().encode()
        # Every key is compared, each in constant time: the answer's timing tells
        # nothing about which key came close.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise APIError(401, "incorrect API key provided", "invalid_api_key")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_startup(keys: tuple[str, ...], no_auth: bool, host: str) -> None:
    """Raise :class:`ConfigError` (one line) when the gateway must not start so."""
    if keys and no_auth:
        raise ConfigError("--no-auth given while EMBEDFLEET_API_KEYS is set: choose one")
    if keys:
        return
    if not no_auth:
        raise ConfigError(
            "no API keys: set EMBEDFLEET_API_KEYS=key1,key2 (or --no-auth on a loopback "
            "address for local use)"
        )
    if not is_loopback(host):
        raise ConfigError(
            f"--no-auth is only allowed on a loopback address, not --host {host}: "
            "set EMBEDFLEET_API_KEYS to serve on the network"
        )
