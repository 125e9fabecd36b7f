"""A local replica of the 恒源云 (gpushare.com) store: the store page and its listing API.

One `LocalServer` serves both, like the real site's page + API pair:

- `GET /store` — a small plain-JS single-page app. It reads a token from
  `localStorage["token"]`; when the market needs one and there is none it renders a login form
  (`input[name=username]`, `input[type=password]`, `button[type=submit]`), which POSTs to
  `/app/api/user/login` and stores the token it gets. It then loads the listing with `fetch()`
  from `GET /app/api/market/machine/list?models=-1&gpuName=&priceOrder=asc&pn=<n>&ps=<size>`
  with `Authorization: Bearer <token>`, renders one `.machine-card` per machine and a pager
  (`.el-pagination .btn-next`, disabled on the last page). A 401 clears the token and shows the
  login form with "登录已过期". Nothing is fetched from anywhere else.
- `GET /app/api/market/machine/list` — `{"code": 200, "msg": "success", "data": {"total": N,
  "list": [...]}}`, pages `pn`/`ps`, sorted by payg price when `priceOrder=asc`.
- `POST /app/api/user/login` — `{"username", "password"}` → `{"code": 200, "data": {"token"}}`,
  or HTTP 401 `{"code": 401, "msg": "用户名或密码错误"}`.

Usage::

    with HengyuanFake(mode="login", page_size=3) as fake:
        settings = HengyuanSettings(store_url=fake.store_url, api_url=fake.api_url, ...)
        ...
        fake.listing_requests      # listing calls answered so far (also page_requests, login_requests)
        fake.set_price("A100-80G", 7.9)   # change prices between runs
        fake.mode = "expired"             # modes may be switched between runs

Modes (`fake.mode`):
- "anonymous": the listing works without a token (the page does not ask for one).
- "login": a token is required; the page shows the login form when it has none. Valid token:
  `fake.token` (also what a successful login returns); credentials `fake.username`/`fake.password`.
- "captcha": like "login", but the form carries an image captcha (`.captcha`) and the login
  endpoint refuses every attempt (HTTP 403, code 1001 "请完成验证").
- "expired": every token is refused with HTTP 401 (the page then shows the login form).
- "empty": the market lists no machines (`total: 0, list: []`).
- "api_moved": the page loads `/app/api/v2/market/machines` instead (the old path 404s).
- "hang": the store page never answers (the API still does).
- "api_hang": the store page loads but the listing API never answers.

`fake.env(source=...)` gives the TRACKER_PROVIDERS__HENGYUAN__* variables that point the
tracker at the replica (store URL, API URL, browser path, source).

Other knobs: `machines` (the list served; replace or mutate freely), `page_size` (the page's ps),
`latency` (seconds added to every API answer), `api_status` (force an HTTP status on the
listing, e.g. 503), `pager` (False: the page renders no pager, e.g. infinite scroll). Machine generators: `seed_machines()` (the seed report's rows and a few odd
ones), `large_machines(n)` (deterministic, for benchmarks: 500 machines = 10 pages at ps=50).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from copy import deepcopy
from typing import Any

from tests.fakes.server import LocalServer, Reply, Request, ServedFake

LIST_PATH = "/app/api/market/machine/list"
MOVED_PATH = "/app/api/v2/market/machines"
LOGIN_PATH = "/app/api/user/login"
MODES = ("anonymous", "login", "captcha", "expired", "empty", "api_moved", "hang", "api_hang")


def machine(
    mid: int,
    gpu_name: str,
    price: float | str | None,
    *,
    name: str = "",
    gpu_num: int = 8,
    gpu_used: int = 0,
    online: bool = True,
    cpu: int | None = 16,
    memory: int | None = 128,
    system_disk: int | None = 20,
    data_disk: int | None = 50,
    **extra: Any,
) -> dict[str, Any]:
    """One listing entry in the shape the open-source monitors saw (CPU/RAM/disk names are our
    guess: the real ones are unknown, which is why the parser accepts several spellings)."""
    sku = [{"skuName": "day", "price": round(float(price) * 22, 2)}] if isinstance(price, int | float) else []
    if price is not None:
        sku.insert(0, {"skuName": "payg", "price": price})
    m: dict[str, Any] = {
        "id": mid,
        "machineName": name or f"M{mid}-{gpu_name.split()[-1]}",
        "isOnline": online,
        "gpuNum": gpu_num,
        "gpuUsed": gpu_used,
        "cpuNum": cpu,
        "memorySize": memory,
        "systemDiskSize": system_disk,
        "dataDiskSize": data_disk,
        "baseInfo": {
            "gpuName": gpu_name,
            "gpuToolkitVersion": "12.2",
            "gpuDriverVersion": "535.104.05",
            "netDownloadSpeed": 104857600,
        },
        "skuList": sku,
    }
    m.update(extra)
    return m


def seed_machines() -> list[dict[str, Any]]:
    """The seed report's Hengyuan rows plus what makes a marketplace awkward:

    - A100-80G: cheapest *available* 8.50 (13 vCPU, 128G, system 20G + data 50G, 3 free GPUs);
      a cheaper 7.90 machine with every GPU rented; an offline 6.00 one; a 9.80 one (1 free).
    - A800-80G: two machines, none free (the seed table's "-").
    - RTX4090-24G named "4090 24G（北）", RTX3090 "XS22-3090-8", and an unknown "MTT S4000".
    """
    return [
        machine(101, "NVIDIA A100-SXM4-80GB", 9.8, name="A100-9", cpu=16, memory=128, gpu_num=8, gpu_used=7),
        machine(102, "NVIDIA A100-SXM4-80GB", 8.5, name="A100-80G-东3", cpu=13, memory=128, gpu_num=8, gpu_used=5),
        machine(103, "NVIDIA A100-SXM4-80GB", 7.9, name="A100-full", cpu=13, memory=128, gpu_num=4, gpu_used=4),
        machine(104, "NVIDIA A100-SXM4-80GB", 6.0, name="A100-off", online=False, gpu_num=8, gpu_used=0),
        machine(201, "A800", 9.0, name="A800-1", cpu=16, memory=256, gpu_num=8, gpu_used=8),
        machine(202, "A800", 9.5, name="A800-2", cpu=16, memory=256, gpu_num=4, gpu_used=4),
        machine(301, "GeForce RTX 4090", 2.6, name="4090 24G（北）", cpu=12, memory=64, gpu_num=8, gpu_used=2,
                data_disk=100),
        machine(401, "NVIDIA GeForce RTX 3090", 1.8, name="XS22-3090-8", cpu=10, memory=62, gpu_num=8, gpu_used=6),
        machine(501, "MTT S4000", 3.2, name="mtt-1", gpu_num=4, gpu_used=1),
    ]


def large_machines(n: int = 500, seed: int = 7) -> list[dict[str, Any]]:
    """`n` plausible machines over several GPU models, deterministic for a given seed."""
    rnd = random.Random(seed)
    models = [
        ("NVIDIA A100-SXM4-80GB", 8.5, 13, 128),
        ("NVIDIA A100-PCIE-40GB", 6.2, 12, 96),
        ("A800", 9.0, 16, 256),
        ("GeForce RTX 4090", 2.4, 12, 64),
        ("NVIDIA GeForce RTX 3090", 1.7, 10, 62),
        ("Tesla V100-SXM2-32GB", 2.9, 10, 60),
        ("NVIDIA H800", 19.5, 24, 256),
    ]
    out = []
    for i in range(n):
        gpu, base, cpu, mem = models[i % len(models)]
        gpu_num = rnd.choice((1, 2, 4, 8))
        out.append(
            machine(
                10_000 + i,
                gpu,
                round(base * (1 + rnd.random() * 0.6), 2),
                name=f"H{i}",
                cpu=cpu,
                memory=mem,
                gpu_num=gpu_num,
                gpu_used=rnd.randint(0, gpu_num),
                online=rnd.random() > 0.05,
            )
        )
    return out


def _payg(m: dict[str, Any]) -> float:
    for sku in m.get("skuList") or []:
        if sku.get("skuName") == "payg":
            try:
                return float(sku["price"])
            except (TypeError, ValueError, KeyError):
                return float("inf")
    return float("inf")


_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>云市场 - 恒源云</title>
<style>.machine-card{border:1px solid #ccc;margin:4px;padding:4px}.error{color:red}</style></head>
<body><div id="app">加载中…</div>
<script>
var CFG = __CFG__;
var app = document.getElementById('app');
function esc(s){ return String(s).replace(/[&<>"]/g, function(c){ return '&#' + c.charCodeAt(0) + ';'; }); }
function showLogin(msg){
  var h = '<form id="login-form" class="login"><h2>账号登录</h2>';
  if (msg) h += '<p class="error">' + esc(msg) + '</p>';
  h += '<input name="username" type="text" placeholder="手机号/用户名">';
  h += '<input name="password" type="password" placeholder="密码">';
  if (CFG.captcha) h += '<div class="captcha"><img class="captcha-img" alt="验证码"><input name="captcha" placeholder="验证码"></div>';
  h += '<button type="submit">登录</button></form>';
  app.innerHTML = h;
  document.getElementById('login-form').addEventListener('submit', function(ev){
    ev.preventDefault();
    var f = ev.target;
    fetch(CFG.api + '/user/login', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({username: f.username.value, password: f.password.value})})
      .then(function(r){ return r.json(); })
      .then(function(b){
        if (b.code === 200 && b.data && b.data.token) { localStorage.setItem('token', b.data.token); load(1); }
        else { showLogin(b.msg || '登录失败'); }
      });
  });
}
function load(pn){
  var headers = {};
  var t = localStorage.getItem('token');
  if (t) headers['Authorization'] = 'Bearer ' + t;
  else if (CFG.needToken) { showLogin(''); return; }
  fetch(CFG.api + CFG.path + '?models=-1&gpuName=&priceOrder=asc&pn=' + pn + '&ps=' + CFG.ps, {headers: headers})
    .then(function(r){
      if (r.status === 401) { localStorage.removeItem('token'); showLogin('登录已过期，请重新登录'); return null; }
      return r.json();
    })
    .then(function(b){ if (b) render(b.data || {}, pn); })
    .catch(function(e){ app.innerHTML = '<p class="error">网络错误</p>'; });
}
function render(d, pn){
  var list = d.list || [], total = d.total || 0;
  var h = '<div class="market">';
  if (!list.length) h += '<p class="empty">暂无可租用机器</p>';
  for (var i = 0; i < list.length; i++) {
    var m = list[i], price = '-';
    (m.skuList || []).forEach(function(s){ if (s.skuName === 'payg') price = s.price; });
    h += '<div class="machine-card"><b>' + esc(m.machineName) + '</b> ' + esc((m.baseInfo || {}).gpuName || '') +
         ' 空闲 ' + (m.gpuNum - m.gpuUsed) + '/' + m.gpuNum + ' <span class="price">￥' + esc(price) + '/时</span></div>';
  }
  var last = pn * CFG.ps >= total;
  if (!CFG.pager) { app.innerHTML = h + '</div>'; return; }
  h += '</div><div class="el-pagination"><button class="btn-prev"' + (pn <= 1 ? ' disabled' : '') + '>上一页</button>' +
       '<span class="el-pager">' + pn + '</span><button class="btn-next"' + (last ? ' disabled' : '') + '>下一页</button></div>';
  app.innerHTML = h;
  app.querySelector('.btn-next').addEventListener('click', function(){ load(pn + 1); });
  app.querySelector('.btn-prev').addEventListener('click', function(){ load(pn - 1); });
}
load(1);
</script></body></html>
"""


class HengyuanFake(ServedFake):
    """The replica; see the module docstring. Thread-safe counters; start/stop or use `with`."""

    def __init__(
        self,
        machines: list[dict[str, Any]] | None = None,
        *,
        mode: str = "anonymous",
        page_size: int = 50,
        latency: float = 0.0,
        token: str = "tok-valid-123",
        username: str = "analyst",
        password: str = "s3cret",
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.machines = seed_machines() if machines is None else machines
        self.mode = mode
        self.page_size = page_size
        self.latency = latency
        self.token = token
        self.username = username
        self.password = password
        self.api_status: int | None = None
        self.pager = True
        self.listing_requests = 0
        self.page_requests = 0
        self.login_requests = 0
        self.seen_tokens: list[str | None] = []
        self._lock = threading.Lock()
        self.server = LocalServer(self.handle)


    @property
    def store_url(self) -> str:
        return f"{self.server.url}/store"

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/app/api"

    def env(self, *, source: str = "browser", browser_path: str = "/usr/bin/chromium") -> dict[str, str]:
        """TRACKER_* variables pointing the tracker's hengyuan provider at this replica."""
        prefix = "TRACKER_PROVIDERS__HENGYUAN__"
        return {
            f"{prefix}STORE_URL": self.store_url,
            f"{prefix}API_URL": self.api_url,
            f"{prefix}BROWSER_PATH": browser_path,
            f"{prefix}SOURCE": source,
        }

    # -- knobs -------------------------------------------------------------------------------
    def set_price(self, match: str | Callable[[dict[str, Any]], bool], price: float | str | None) -> int:
        """Set the payg price of machines whose GPU name contains `match` (or for which the
        predicate is true); returns how many changed."""
        def hit(m: dict[str, Any]) -> bool:
            if callable(match):
                return match(m)
            name = (m.get("baseInfo") or {}).get("gpuName", "")
            return match.replace("-80G", "").replace("-40G", "") in name
        n = 0
        with self._lock:
            for m in self.machines:
                if hit(m):
                    for sku in m.get("skuList") or []:
                        if sku.get("skuName") == "payg":
                            sku["price"] = price
                    n += 1
        return n

    def reset_counters(self) -> None:
        with self._lock:
            self.listing_requests = self.page_requests = self.login_requests = 0
            self.seen_tokens.clear()

    # -- HTTP ------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        if req.path in ("/store", "/store/"):
            return self._store_page()
        if req.path == LOGIN_PATH:
            return self._login(req)
        if req.path == LIST_PATH and self.mode != "api_moved":
            return self._listing(req)
        if req.path == MOVED_PATH and self.mode == "api_moved":
            return self._listing(req)
        if req.path == "/favicon.ico":
            return Reply(204)
        return Reply.json({"code": 404, "msg": "not found"}, status=404)

    def _store_page(self) -> Reply:
        with self._lock:
            self.page_requests += 1
        if self.mode == "hang":
            return Reply(hang=True)
        cfg = {
            "api": "/app/api",
            "path": "/v2/market/machines" if self.mode == "api_moved" else "/market/machine/list",
            "needToken": self.mode in ("login", "captcha", "expired"),
            "captcha": self.mode == "captcha",
            "ps": self.page_size,
            "pager": self.pager,
        }
        return Reply.html(_PAGE.replace("__CFG__", json.dumps(cfg)))

    def _login(self, req: Request) -> Reply:
        with self._lock:
            self.login_requests += 1
        if self.mode == "captcha":
            return Reply.json({"code": 1001, "msg": "请完成验证"}, status=403, delay=self.latency)
        try:
            body = req.json() or {}
        except ValueError:
            body = {}
        if body.get("username") == self.username and body.get("password") == self.password:
            return Reply.json({"code": 200, "msg": "success", "data": {"token": self.token}}, delay=self.latency)
        return Reply.json({"code": 401, "msg": "用户名或密码错误"}, status=401, delay=self.latency)

    def _listing(self, req: Request) -> Reply:
        auth = req.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        with self._lock:
            self.listing_requests += 1
            self.seen_tokens.append(token)
            machines = deepcopy(self.machines)
        if self.mode == "api_hang":
            return Reply(hang=True)
        if self.api_status:
            return Reply.json({"code": self.api_status, "msg": "error"}, status=self.api_status, delay=self.latency)
        if self.mode == "expired" and token is not None:
            return Reply.json({"code": 401, "msg": "token已过期"}, status=401, delay=self.latency)
        if self.mode in ("login", "captcha", "expired") and token != self.token:
            return Reply.json({"code": 401, "msg": "请先登录"}, status=401, delay=self.latency)
        if self.mode == "anonymous" and token is not None and token != self.token:
            return Reply.json({"code": 401, "msg": "token已过期"}, status=401, delay=self.latency)
        try:
            pn = max(int(req.arg("pn", "1") or 1), 1)
            ps = max(int(req.arg("ps", "50") or 50), 1)
        except ValueError:
            return Reply.json({"code": 400, "msg": "bad paging"}, status=400)
        if self.mode == "empty":
            machines = []
        if req.arg("priceOrder") == "asc":
            machines.sort(key=_payg)
        page = machines[(pn - 1) * ps : pn * ps]
        payload = {"code": 200, "msg": "success", "data": {"total": len(machines), "list": page}}
        return Reply.json(payload, delay=self.latency)
