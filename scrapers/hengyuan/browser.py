"""The browser source: drive the store page and capture the listing responses it makes.

The store is a JavaScript single-page app whose listing API wants a logged-in session. Rather
than re-implementing its login, we let the page do its own work and read the JSON answers of
`/market/machine/list` as they arrive (no DOM scraping: the cards' markup may change at will,
the API's JSON is what the page itself depends on).

One fetch: open the store page in a fresh context (with a configured token put where the page
looks for it, and added to listing requests); wait until the page requests the listing, or shows
a login form (filled in when credentials are configured), or a captcha; then page through with
the page's own "next" button, falling back to replaying the page's own listing request with the
next page number when there is no usable button.

Every way this can fail has a name: a login wall without credentials or a captcha is
BlockedError, rejected credentials or an expired token AuthError, a page that never requests
the listing LayoutChangedError, a page that does not load in time TransientError.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import structlog

from scrapers.base import (
    AuthError,
    BlockedError,
    Diagnostics,
    LayoutChangedError,
    ScrapeError,
    TransientError,
)
from scrapers.hengyuan.parse import listing_page
from scrapers.hengyuan.settings import HengyuanSettings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from playwright.async_api import Page, Response

    from scrapers.browser import BrowserPool

log = structlog.get_logger(__name__)

LIST_PATH = "/market/machine/list"
TOKEN_STORAGE_KEYS = ("token", "Authorization", "access_token")
CAPTCHA_SELECTOR = (
    ".captcha, .geetest_panel, .geetest_holder, .nc-container, #nc_1_wrapper, .tcaptcha-transform, "
    "iframe[src*='captcha'], img[alt*='验证码'], [class*='captcha' i], [id*='captcha' i]"
)
PASSWORD_SELECTOR = "input[type=password]"
USERNAME_SELECTOR = (
    "input[name=username], input[name=phone], input[name=mobile], input[name=account], "
    "input[type=tel], input[type=email], input[type=text]"
)
SUBMIT_SELECTOR = "button[type=submit], button:has-text('登录'), input[type=submit]"
NEXT_SELECTOR = ".el-pagination .btn-next, button.btn-next, .ant-pagination-next, [aria-label='next page']"
POLL = 0.1


@dataclass  # no slots: Playwright tags handler objects with attributes
class _Captured:
    """Listing and login responses seen so far, in arrival order."""

    listing: list[Response] = field(default_factory=list)
    login: list[Response] = field(default_factory=list)
    listing_requests: int = 0

    def on_request(self, request: Any) -> None:
        if request.method != "OPTIONS" and urlsplit(request.url).path.endswith(LIST_PATH):
            self.listing_requests += 1

    def on_response(self, response: Response) -> None:
        path = urlsplit(response.url).path
        if response.request.method == "OPTIONS":
            return
        if path.endswith(LIST_PATH):
            self.listing.append(response)
        elif "login" in path.lower():
            self.login.append(response)


def _page_number(url: str) -> int:
    try:
        return int(parse_qs(urlsplit(url).query).get("pn", ["1"])[0])
    except ValueError:
        return 1


def _page_size(url: str, fallback: int) -> int:
    try:
        return max(int(parse_qs(urlsplit(url).query).get("ps", [str(fallback)])[0]), 1)
    except ValueError:
        return fallback


def _with_page(url: str, pn: int) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    query["pn"] = str(pn)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _check_listing_status(status: int, url: str, had_token: bool) -> None:
    if status == 200:
        return
    if status == 401:
        if had_token:
            raise AuthError(
                "hengyuan answered the listing with HTTP 401 for the configured token: it has expired; "
                "set a fresh TRACKER_PROVIDERS__HENGYUAN__TOKEN (or configure username and password)"
            )
        raise AuthError(f"hengyuan answered the listing with HTTP 401 ({url}): the session is not logged in")
    if status == 403:
        raise BlockedError(f"hengyuan refused the listing request (HTTP 403, {url})")
    if status == 429 or status >= 500:
        raise TransientError(f"hengyuan listing answered HTTP {status}", code=str(status))
    raise LayoutChangedError(f"hengyuan listing answered HTTP {status} ({url})")


async def _visible(page: Page, selector: str) -> bool:
    try:
        loc = page.locator(selector)
        n = await loc.count()
        for i in range(min(n, 5)):
            if await loc.nth(i).is_visible():
                return True
    except Exception:  # a navigating page has no DOM for a moment: "not visible yet"
        return False
    return False


class BrowserListing:
    """Fetches the whole listing (raw machine dicts) through the store page."""

    def __init__(self, settings: HengyuanSettings):
        self.settings = settings
        token = settings.token.get_secret_value().strip() if settings.token else ""
        self.token = token or None
        self.username = settings.username.get_secret_value() if settings.username else ""
        self.password = settings.password.get_secret_value() if settings.password else ""

    async def fetch(self, pool: BrowserPool, diag: Diagnostics) -> list[dict[str, Any]]:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            async with pool.page(timeout=self.settings.fetch_timeout) as page:
                return await self._fetch_on(page, diag)
        except ScrapeError:
            raise
        except PlaywrightTimeout as exc:
            raise TransientError(
                f"hengyuan store page {self.settings.store_url} did not load within "
                f"{self.settings.navigation_timeout:g}s"
            ) from exc
        except PlaywrightError as exc:
            # Navigation timeouts, a refused connection, a crashed page: try again next run.
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TransientError(f"hengyuan store page: {first}") from exc

    async def _fetch_on(self, page: Page, diag: Diagnostics) -> list[dict[str, Any]]:
        s = self.settings
        captured = _Captured()
        page.on("response", captured.on_response)
        page.on("request", captured.on_request)
        if self.token:
            await page.context.add_init_script(_token_script(self.token))
            await page.route(f"**{LIST_PATH}*", self._add_token)
        response = await page.goto(s.store_url, wait_until="domcontentloaded", timeout=s.navigation_timeout * 1000)
        if response is not None and response.status >= 400:
            status = response.status
            if status in (401, 403):
                raise BlockedError(f"hengyuan store page answered HTTP {status}: access refused")
            if status == 429 or status >= 500:
                raise TransientError(f"hengyuan store page answered HTTP {status}", code=str(status))
            raise LayoutChangedError(f"hengyuan store page {s.store_url} answered HTTP {status}")

        first = await self._first_listing(page, captured)
        pages: dict[int, list[dict[str, Any]]] = {}
        parsed = await self._read(first, diag)
        pages[_page_number(first.url)] = parsed.machines
        total = parsed.total
        if total is None:
            raise LayoutChangedError("hengyuan listing: `data.total` is missing, cannot page through it")
        ps = _page_size(first.url, max(len(parsed.machines), 1))
        needed = math.ceil(total / ps) if total else 1
        if needed > s.max_pages:
            raise LayoutChangedError(
                f"hengyuan listing claims {total} machines ({needed} pages), more than max_pages={s.max_pages}"
            )
        for pn in range(2, needed + 1):
            if pn not in pages:
                pages[pn] = await self._next_page(page, captured, pn, first, diag)
            if not pages[pn]:
                diag.warnings.append(f"listing page {pn} was empty before total {total} was reached")
                break
        machines = [m for pn in sorted(pages) for m in pages[pn]]
        log.info("hengyuan_browser_listing", pages=len(pages), machines=len(machines), total=total)
        return machines

    async def _add_token(self, route: Any) -> None:
        headers = dict(route.request.headers)
        if not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {self.token}"
        await route.continue_(headers=headers)

    async def _first_listing(self, page: Page, captured: _Captured) -> Response:
        """Wait for the page's first listing answer, logging in once if the page asks."""
        s = self.settings
        deadline = time.monotonic() + s.listing_timeout
        logged_in = False
        while True:
            for resp in captured.listing:
                if resp.status == 200:
                    return resp
                if resp.status == 401 and not (self._can_login and not logged_in):
                    _check_listing_status(resp.status, resp.url, had_token=bool(self.token) and not logged_in)
                if resp.status != 401:
                    _check_listing_status(resp.status, resp.url, had_token=bool(self.token))
            if logged_in:
                await self._check_login_answers(captured)
            if await _visible(page, CAPTCHA_SELECTOR):
                raise BlockedError(
                    "hengyuan store shows a captcha: automated access is being challenged; "
                    "configure a session token (TRACKER_PROVIDERS__HENGYUAN__TOKEN) instead"
                )
            if await _visible(page, PASSWORD_SELECTOR) and not logged_in:
                if not self._can_login:
                    if self.token and any(r.status == 401 for r in captured.listing):
                        _check_listing_status(401, captured.listing[-1].url, had_token=True)
                    raise BlockedError(
                        "hengyuan store asks for a login and no credentials are configured: set "
                        "TRACKER_PROVIDERS__HENGYUAN__USERNAME and __PASSWORD, or __TOKEN"
                    )
                before = len(captured.listing)
                await self._login(page)
                logged_in = True
                # Answers from before the login (the 401s behind the wall) are not the listing we
                # want; the page may already have fetched the real one while the click was under
                # way, so only what was captured before the click is dropped.
                del captured.listing[:before]
                deadline = time.monotonic() + s.listing_timeout
            if time.monotonic() > deadline:
                if captured.listing_requests:
                    raise TransientError(
                        f"the hengyuan listing API did not answer the store page within {s.listing_timeout:g}s"
                    )
                raise LayoutChangedError(
                    f"the hengyuan store page did not request the listing ({LIST_PATH}) within "
                    f"{s.listing_timeout:g}s and showed no login form: the page or its API path has changed"
                )
            await asyncio.sleep(POLL)

    @property
    def _can_login(self) -> bool:
        return bool(self.username and self.password)

    async def _login(self, page: Page) -> None:
        log.info("hengyuan_browser_login")
        form = page.locator("form").filter(has=page.locator(PASSWORD_SELECTOR))
        scope = form.first if await form.count() else page
        user = scope.locator(USERNAME_SELECTOR).first
        if not await user.count():
            raise LayoutChangedError("hengyuan login form has a password field but no username field")
        await user.fill(self.username)
        await scope.locator(PASSWORD_SELECTOR).first.fill(self.password)
        submit = scope.locator(SUBMIT_SELECTOR).first
        if await submit.count():
            await submit.click()
        else:
            await scope.locator(PASSWORD_SELECTOR).first.press("Enter")

    async def _check_login_answers(self, captured: _Captured) -> None:
        for resp in captured.login:
            body: Any = None
            try:
                body = json.loads(await resp.body())
            except Exception:
                body = None
            code = body.get("code") if isinstance(body, dict) else None
            msg = str(body.get("msg") or "")[:120] if isinstance(body, dict) else ""
            if resp.status in (401,) or (resp.status == 200 and code not in (None, 0, 200, "0", "200")):
                if str(code) in ("1001",) or "验证" in msg:
                    raise BlockedError(f"hengyuan login asks for a captcha/verification: {msg}")
                raise AuthError(f"hengyuan rejected the configured username/password: {msg or resp.status}")
            if resp.status == 403:
                raise BlockedError(f"hengyuan refused the login (HTTP 403): {msg}")

    async def _read(self, resp: Response, diag: Diagnostics) -> Any:
        diag.requests += 1
        _check_listing_status(resp.status, resp.url, had_token=bool(self.token))
        try:
            payload = json.loads(await resp.body())
        except ValueError as exc:
            raise LayoutChangedError(f"hengyuan listing answer is not JSON ({resp.url})") from exc
        return listing_page(payload, f"hengyuan listing page {_page_number(resp.url)}")

    async def _next_page(
        self, page: Page, captured: _Captured, pn: int, first: Response, diag: Diagnostics
    ) -> list[dict[str, Any]]:
        """Page `pn`: click the page's "next" control; without one (or when it does nothing),
        replay the page's own listing request with `pn` (same headers, same session)."""
        s = self.settings
        seen = len(captured.listing)
        button = page.locator(NEXT_SELECTOR).first
        try:
            clickable = await button.count() > 0 and await button.is_enabled() and await button.is_visible()
        except Exception:
            clickable = False
        if clickable:
            await button.click()
            deadline = time.monotonic() + s.listing_timeout
            while time.monotonic() < deadline:
                for resp in captured.listing[seen:]:
                    if _page_number(resp.url) == pn:
                        return (await self._read(resp, diag)).machines
                await asyncio.sleep(POLL / 2)
            diag.warnings.append(f"the store page's next button did not load page {pn}; replaying the request")
        headers = await first.request.all_headers()
        headers = {k: v for k, v in headers.items() if not k.startswith(":")}
        diag.requests += 1
        answer = await page.request.get(
            _with_page(first.url, pn), headers=headers, timeout=s.navigation_timeout * 1000
        )
        try:
            _check_listing_status(answer.status, answer.url, had_token=bool(self.token))
            try:
                payload = json.loads(await answer.body())
            except ValueError as exc:
                raise LayoutChangedError(f"hengyuan listing page {pn} is not JSON") from exc
            return listing_page(payload, f"hengyuan listing page {pn}").machines
        finally:
            await answer.dispose()


def _token_script(token: str) -> str:
    # Put the token where a single-page app usually keeps it; which key the real store uses is
    # unknown, so several are set (the listing requests also get the header, see _add_token).
    sets = "".join(
        f"try{{localStorage.setItem({json.dumps(k)},{json.dumps(token)});}}catch(e){{}}" for k in TOKEN_STORAGE_KEYS
    )
    return f"(function(){{{sets}}})();"
