"""Whether the W&B server answers, asked before an online run starts: without a network wandb
retries for minutes before it fails, so regkit tries one TCP connection with a short timeout and
runs offline when it gets none (regkit/loggers/wandb.py says so and how to upload later)."""
from __future__ import annotations

import os
import socket
import threading
from typing import Optional
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.wandb.ai"
TIMEOUT_S = 3.0


def base_url() -> str:
    """The W&B server regkit's runs would talk to: ``WANDB_BASE_URL``, else the public one."""
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def address(url: str) -> tuple[str, int]:
    """(host, port) a connection to ``url`` goes to: the proxy's when one is set for its scheme."""
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    proxy = os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY")
    if proxy and not bypasses_proxy(parts.hostname or ""):
        parts, scheme = urlsplit(proxy if "://" in proxy else "http://" + proxy), "http"
    return parts.hostname or "", parts.port or (443 if scheme == "https" else 80)


def bypasses_proxy(host: str) -> bool:
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    names = [n.strip().lstrip(".") for n in no_proxy.split(",") if n.strip()]
    return "*" in names or any(host == n or host.endswith("." + n) for n in names)


def unreachable(url: str, timeout: float = TIMEOUT_S) -> Optional[str]:
    """None when a TCP connection to ``url``'s server (or proxy) opens within ``timeout`` seconds,
    else why not. Name resolution counts against the timeout too (it runs in a thread)."""
    host, port = address(url)
    if not host:
        return f"no host in {url!r}"
    outcome: list[Optional[str]] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err.strerror or str(err) or type(err).__name__)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"
