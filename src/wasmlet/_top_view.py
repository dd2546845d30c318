"""The terminal side of ``wasmlet top``: scrape, summarise, draw with rich."""

from __future__ import annotations

import math
import time

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ._errors import ConfigError
from .telemetry import AppRow, Scrape, parse_scrape, summarize

__all__ = ["render", "run_top"]


def _scrape(client: httpx.Client, url: str) -> Scrape:
    try:
        response = client.get(url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ConfigError(f"--admin: cannot read {url}: {exc}") from exc
    return parse_scrape(response.text)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def render(rows: list[AppRow], rss: float) -> Table:
    table = Table(title=f"wasmlet top  (workers RSS {rss / 2**20:.1f} MiB)")
    for column in ("APP", "REQ/S", "P50 ms", "P99 ms", "5XX/S", "GUEST MEM", "COLD P50 ms", "STATE"):
        table.add_column(column, justify="left" if column in ("APP", "STATE") else "right")
    for row in rows:
        table.add_row(row.app, f"{row.rps:.1f}", _ms(row.p50), _ms(row.p99), f"{row.errors_per_s:.1f}",
                      f"{row.memory / 2**20:.1f} MiB", _ms(row.cold_start_p50), row.state)
    return table


def run_top(admin_url: str, interval: float, once: bool) -> None:
    url = admin_url.rstrip("/") + "/metrics"
    console = Console()
    with httpx.Client(timeout=5) as client:
        before, when = _scrape(client, url), time.monotonic()
        if once:
            time.sleep(interval)
            after = _scrape(client, url)
            console.print(render(summarize(before, after, time.monotonic() - when), after.rss))
            return
        with Live(render([], before.rss), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                after, now = _scrape(client, url), time.monotonic()
                live.update(render(summarize(before, after, now - when), after.rss))
                before, when = after, now
