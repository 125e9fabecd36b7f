"""BrowserPool with the real Chromium: fresh contexts, hard timeouts, cancellation, no leftovers."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import pytest_asyncio

from scrapers.base import ConfigurationError
from scrapers.browser import BrowserPool, FetchTimeout, chromium_processes, find_chromium, read_process
from tests.browser._support import CHROMIUM, wait_no_chromium
from tests.fakes.server import LocalServer, Reply

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def handler(req):
    if req.path == "/hang":
        return Reply(hang=True)
    return Reply.html("<html><body><p id=x>hello</p><script>document.cookie='seen=1'</script></body></html>")


@pytest.fixture(scope="module")
def site():
    with LocalServer(handler) as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool():
    p = BrowserPool(CHROMIUM, navigation_timeout=5)
    yield p
    await p.aclose()


async def test_find_chromium(tmp_path, monkeypatch):
    assert find_chromium(CHROMIUM) == CHROMIUM
    assert find_chromium("chromium") == CHROMIUM  # a name on PATH is resolved
    with pytest.raises(ConfigurationError, match="not an executable"):
        find_chromium(str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="no Chromium found.*browser_path"):
        find_chromium(None)


async def test_fresh_context_per_fetch(pool, site):
    async with pool.page(timeout=20) as page:
        await page.goto(site.url + "/a")
        assert await page.text_content("#x") == "hello"
        assert "seen=1" in await page.evaluate("document.cookie")
        await page.evaluate("localStorage.setItem('k', 'v')")
        assert pool.open_contexts == 1
    assert pool.open_contexts == 0
    async with pool.page(timeout=20) as page:
        await page.goto(site.url + "/b")
        assert await page.evaluate("localStorage.getItem('k')") is None  # nothing carried over
    assert pool.launches == 1  # one browser, reused


async def test_whole_fetch_timeout_closes_the_context(pool, site):
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(FetchTimeout, match="1s budget"):
        async with pool.page(timeout=1) as page:
            await page.goto(site.url + "/hang", timeout=60_000)  # the fetch budget wins
    assert loop.time() - started < 3
    assert pool.open_contexts == 0
    async with pool.page(timeout=20) as page:  # the pool is still usable
        await page.goto(site.url + "/after")


async def test_cancellation_and_errors_close_the_context(pool, site):
    entered = asyncio.Event()

    async def fetch():
        async with pool.page(timeout=30) as page:
            entered.set()
            await page.goto(site.url + "/hang")

    task = asyncio.create_task(fetch())
    await entered.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.open_contexts == 0

    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.5):
            async with pool.page(timeout=30) as page:
                await page.goto(site.url + "/hang")
    assert pool.open_contexts == 0

    with pytest.raises(ZeroDivisionError):
        async with pool.page(timeout=30) as page:
            raise ZeroDivisionError(page.url)
    assert pool.open_contexts == 0


async def test_a_crashed_browser_is_restarted(site):
    before = {proc.pid for proc in chromium_processes()}  # the module's pool: not ours to kill
    p = BrowserPool(CHROMIUM)
    try:
        async with p.page(timeout=20) as page:
            await page.goto(site.url)
        mine = [proc for proc in chromium_processes() if proc.pid not in before]
        pids = {proc.pid for proc in mine}
        browser = [proc for proc in mine if proc.ppid not in pids]  # the one Playwright's driver started
        assert len(browser) == 1
        os.kill(browser[0].pid, 9)  # the browser process this test's pool started
        await asyncio.sleep(0.5)
        async with p.page(timeout=20) as page:
            await page.goto(site.url)
            assert await page.text_content("#x") == "hello"
        assert p.launches == 2
    finally:
        await p.aclose()


async def test_aclose_leaves_no_process_and_refuses_reuse(site):
    before = {proc.pid for proc in chromium_processes()}  # the module's pool, still open
    p = BrowserPool(CHROMIUM)
    async with p.page(timeout=20) as page:
        await page.goto(site.url)
    mine = {proc.pid for proc in chromium_processes()} - before
    assert mine
    await p.aclose()
    await p.aclose()  # idempotent
    left = await asyncio.to_thread(wait_no_chromium, 5.0, before)
    assert not left, f"chromium left behind after aclose(): {left}"
    # Chromium's zygotes outlive the browser by a moment as zombies re-parented to PID 1 (which
    # reaps them; in a container that needs an init such as tini). Dead is what matters here.
    running = [info for pid in mine if (info := read_process(pid)) and info.state != "Z"]
    assert not running, f"a process of the pool is still running: {running}"
    with pytest.raises(RuntimeError, match="closed"):
        async with p.page(timeout=5):
            pass


async def test_remote_browser_over_cdp(site):
    profile = tempfile.mkdtemp(prefix="cdp-test-")
    remote = subprocess.Popen(  # noqa: ASYNC220 - a quick spawn; the test owns and kills it
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}", "--no-first-run",
         "--disable-background-networking", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        ws = None
        for _ in range(200):
            line = await asyncio.to_thread(remote.stderr.readline)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                ws = m.group(1)
                break
        assert ws, "remote chromium did not start"
        port = re.search(r":(\d+)/", ws).group(1)
        p = BrowserPool(cdp_url=f"http://127.0.0.1:{port}")
        async with p.page(timeout=20) as page:
            await page.goto(site.url)
            assert await page.text_content("#x") == "hello"
        assert p.open_contexts == 0
        await p.aclose()
        assert remote.poll() is None  # a remote browser is disconnected from, never killed
    finally:
        remote.kill()
        await asyncio.to_thread(remote.wait, 10)
        shutil.rmtree(profile, ignore_errors=True)
