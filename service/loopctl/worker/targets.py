"""Where a webhook may be sent: never to private, loopback or link-local addresses unless the
installation allows them. Every address the host resolves to is checked, just before each
attempt (the SQL API checks again at subscription time)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class TargetRefused(Exception):
    """The URL must not be requested; the message says why (it goes into the attempt log)."""


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc}") from None
    return sorted({str(info[4][0]) for info in infos})


async def check_target(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"not an http(s) URL: {url[:200]}")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(parts.hostname, port)
    refused = [a for a in addresses if not address_is_public(a)]
    if refused:
        raise TargetRefused(
            f"refused: {parts.hostname} resolves to non-public address(es) {', '.join(refused)}"
            " (LOOPCTL_WEBHOOKS_ALLOW_PRIVATE is off)"
        )
