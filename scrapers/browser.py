"""Playwright plumbing shared by every scraper that needs a real browser.

- `find_chromium(configured)`: which Chromium to run (configured path, Playwright's own download,
  then `chromium`/`chromium-browser`/`google-chrome` on PATH), or a ConfigurationError that says
  how to fix it.
- `BrowserPool`: one lazily-started browser (launched headless, or reached over CDP in a separate
  browser container), shared by many fetches. Each fetch gets a fresh context and page through
  `async with pool.page(timeout=...) as page:`; the context is closed in `finally` whatever
  happens (error, timeout, cancellation), so cookies never leak between fetches and renderers
  never pile up. `aclose()` closes the browser and stops Playwright's driver: no process is left.
- `chromium_processes()`: the Chromium processes descended from this process, read from /proc
  (used by tests, benchmarks and health checks to prove nothing leaked).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from scrapers.base import ConfigurationError, TransientError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

log = structlog.get_logger(__name__)

# Flags for running as root in a container without a display or a GPU:
# - --no-sandbox: Chromium's sandbox needs user namespaces, which containers rarely give root.
# - --disable-dev-shm-usage: Docker's /dev/shm is 64 MB; renderers crash when it fills.
# - --disable-gpu: there is no GPU (or display) to use.
# - the background-networking/component/sync flags stop Chromium calling Google hosts, which
#   are unreachable here and would only add noise and delays; --disable-quic keeps traffic on TCP.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--mute-audio",
)

_PATH_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class FetchTimeout(TransientError):
    """A whole browser fetch took longer than its budget."""


def _playwright_downloads() -> list[str]:
    """Chromium binaries Playwright downloaded (`playwright install chromium`), newest first."""
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(Path.home() / ".cache" / "ms-playwright")
    patterns = (
        "chromium-*/chrome-linux*/chrome",
        "chromium_headless_shell-*/chrome-linux*/headless_shell",
        "chromium_headless_shell-*/chrome-headless-shell-linux*/chrome-headless-shell",
    )
    found = [p for pat in patterns for p in glob.glob(os.path.join(root, pat))]
    return sorted((p for p in found if os.access(p, os.X_OK)), reverse=True)


def find_chromium(configured: str | None = None) -> str:
    """The Chromium executable to launch.

    A configured path must exist (a typo should fail loudly, not fall back silently). Otherwise
    Playwright's own download is preferred (it matches the driver's protocol version), then a
    system Chromium on PATH (Debian's `chromium`).
    """
    if configured:
        path = shutil.which(configured) or configured
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ConfigurationError(
                f"the configured browser path {configured!r} is not an executable file; "
                "point it at Chromium (e.g. /usr/bin/chromium) or leave it unset to search"
            )
        return path
    downloads = _playwright_downloads()
    if downloads:
        return downloads[0]
    for name in _PATH_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise ConfigurationError(
        "no Chromium found: install one (`apt-get install chromium` or `playwright install chromium`), "
        "set the provider's browser_path to its executable, or set cdp_url to a running browser"
    )


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    name: str
    state: str  # "R", "S", "Z" (zombie) …
    rss_kb: int


def read_process(pid: int) -> ProcessInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2 :].split()
    rss = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return ProcessInfo(pid=pid, ppid=int(rest[1]), name=name, state=rest[0], rss_kb=rss)


def descendant_processes(root: int | None = None) -> list[ProcessInfo]:
    """Every live process (zombies included) whose ancestry reaches `root` (default: this pid)."""
    root = os.getpid() if root is None else root
    procs: dict[int, ProcessInfo] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = read_process(int(entry))
            if info:
                procs[info.pid] = info
    out = []
    for info in procs.values():
        seen, ppid = set(), info.ppid
        while ppid and ppid not in seen:
            if ppid == root:
                out.append(info)
                break
            seen.add(ppid)
            parent = procs.get(ppid)
            ppid = parent.ppid if parent else 0
    return out


def chromium_processes(root: int | None = None) -> list[ProcessInfo]:
    """Chromium processes (browser, zygotes, renderers, utilities) descended from `root`."""
    return [p for p in descendant_processes(root) if "chrom" in p.name.lower() or "headless" in p.name.lower()]


def process_rss_kb(pid: int | None = None) -> int:
    info = read_process(os.getpid() if pid is None else pid)
    return info.rss_kb if info else 0


class BrowserPool:
    """One shared browser; a fresh context and page per fetch.

    `async with pool.page(timeout=60) as page:` starts the browser on first use (or reconnects
    after a crash), opens a new context and page, and closes the context when the block ends —
    also when the block raises, times out or is cancelled. A fetch over `timeout` seconds raises
    `FetchTimeout` (a TransientError). `max_contexts` bounds concurrent fetches. `aclose()` closes
    the browser (a CDP browser is only disconnected from: it belongs to someone else) and stops the
    Playwright driver; after it the pool refuses new fetches.
    """

    def __init__(
        self,
        executable_path: str | None = None,
        cdp_url: str | None = None,
        *,
        launch_timeout: float = 30.0,
        close_timeout: float = 10.0,
        navigation_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
        max_contexts: int = 4,
        user_agent: str | None = None,
    ):
        self.executable_path = executable_path
        self.cdp_url = cdp_url
        self.launch_timeout = launch_timeout
        self.close_timeout = close_timeout
        self.navigation_timeout = navigation_timeout
        self.args = tuple(CHROMIUM_ARGS) + tuple(extra_args)
        self.user_agent = user_agent
        self._slots = asyncio.Semaphore(max_contexts)
        self._lock = asyncio.Lock()
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._contexts: set[BrowserContext] = set()
        self._closed = False
        self.launches = 0  # how many times a browser was started or connected to

    @property
    def open_contexts(self) -> int:
        return len(self._contexts)

    @property
    def running(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    async def _ensure_browser(self) -> Browser:
        async with self._lock:
            if self._closed:
                raise RuntimeError("BrowserPool is closed")
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            await self._shutdown()  # a crashed/disconnected browser: clear what is left of it
            from playwright.async_api import Error as PlaywrightError
            from playwright.async_api import async_playwright

            executable = None if self.cdp_url else find_chromium(self.executable_path)
            self._pw = await async_playwright().start()
            try:
                if self.cdp_url:
                    self._browser = await self._pw.chromium.connect_over_cdp(
                        self.cdp_url, timeout=self.launch_timeout * 1000
                    )
                else:
                    self._browser = await self._pw.chromium.launch(
                        executable_path=executable,
                        headless=True,
                        args=list(self.args),
                        timeout=self.launch_timeout * 1000,
                        # The daemon handles signals and calls aclose(); the driver must not race it.
                        handle_sigint=False,
                        handle_sigterm=False,
                        handle_sighup=False,
                    )
            except PlaywrightError as exc:
                await self._shutdown()
                where = f"over CDP at {self.cdp_url}" if self.cdp_url else f"at {executable}"
                raise TransientError(f"could not start the browser {where}: {str(exc).splitlines()[0]}") from exc
            except BaseException:
                await self._shutdown()
                raise
            self.launches += 1
            log.info("browser_started", cdp=bool(self.cdp_url), version=self._browser.version)
            return self._browser

    @asynccontextmanager
    async def page(self, *, timeout: float | None = None) -> AsyncIterator[Page]:  # noqa: ASYNC109 - the fetch budget is the API
        """A fresh context + page for one fetch, closed on exit. `timeout` bounds the whole fetch
        (browser start, navigation and whatever the block does)."""
        context: BrowserContext | None = None
        async with self._slots:
            try:
                async with asyncio.timeout(timeout) as budget:
                    browser = await self._ensure_browser()
                    options: dict[str, Any] = {"locale": "zh-CN", "service_workers": "block"}
                    if self.user_agent:
                        options["user_agent"] = self.user_agent
                    context = await browser.new_context(**options)
                    self._contexts.add(context)
                    context.set_default_navigation_timeout(self.navigation_timeout * 1000)
                    context.set_default_timeout(self.navigation_timeout * 1000)
                    page = await context.new_page()
                    yield page
            except TimeoutError as exc:
                if budget.expired():
                    raise FetchTimeout(f"browser fetch exceeded its {timeout:g}s budget") from exc
                raise
            finally:
                if context is not None:
                    await self._close_context(context)

    async def _close_context(self, context: BrowserContext) -> None:
        # Shielded: a second cancellation arriving while we close must not abandon the close
        # half-way. If closing fails or hangs, the browser itself is restarted: that is the only
        # way to be sure its renderers are gone.
        self._contexts.discard(context)
        closing = asyncio.ensure_future(self._close_context_bounded(context))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait({closing}, timeout=self.close_timeout + 1)
            raise

    async def _close_context_bounded(self, context: BrowserContext) -> None:
        try:
            async with asyncio.timeout(self.close_timeout):
                await context.close()
        except Exception as exc:  # closing must never mask the fetch's own outcome
            log.warning("browser_context_close_failed", error=repr(exc))
            async with self._lock:
                await self._shutdown()

    async def _shutdown(self) -> None:
        """Close the browser and stop the driver; bounded in time, never raises."""
        browser, pw = self._browser, self._pw
        self._browser, self._pw = None, None
        self._contexts.clear()
        if browser is not None:
            try:
                async with asyncio.timeout(self.close_timeout):
                    await browser.close()
            except Exception as exc:
                log.warning("browser_close_failed", error=repr(exc))
        if pw is not None:
            try:
                # Stopping the driver kills a browser it launched even if close() failed above.
                async with asyncio.timeout(self.close_timeout):
                    await pw.stop()
            except Exception as exc:
                log.warning("playwright_stop_failed", error=repr(exc))

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            await asyncio.shield(self._shutdown())

    async def __aenter__(self) -> BrowserPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
