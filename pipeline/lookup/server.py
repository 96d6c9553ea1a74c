"""`verval status-server`: the status page and its small JSON API (FastAPI on uvicorn).

Privacy by design (UU 27/2022):
- queries and objections are POSTed as JSON, so a name or NIK is never in a URL, a
  browser history or a proxy's access log; uvicorn's access log is off and nothing this
  module logs holds a request's content; errors never echo what was sent;
- a NIK answers only together with the matching name, a region query returns at most a
  handful of masked people and no list of a desa;
- each client (IP address) has a token bucket; past it the server answers 429 in Bahasa.

The index is the one of the round at --round, re-read when its files change (a new
round published in place, or --round a symlink swapped to a new round folder); until the
new one is loaded, and while a round is being written, the last one keeps answering.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from pipeline.lookup import objections
from pipeline.lookup.index import (
    INDEX_FILE,
    KEY_FILE,
    LookupIndex,
    StatusIndexError,
    index_dir,
    lookup_rules,
    normalise_desa,
    normalise_nik,
    standard_names,
)
from pipeline.paths import REFERENCE_DIR
from pipeline.report.pages import asset, content_security_policy, render

log = logging.getLogger("verval.status")

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
MESSAGES = {
    "bad_request": "Permintaan tidak dapat dibaca. Muat ulang halaman lalu coba lagi.",
    "nama": "Isi nama lengkap sesuai KTP.",
    "nik": "NIK harus 16 digit angka.",
    "desa": "Pilih provinsi, kabupaten/kota, kecamatan dan desa/kelurahan.",
    "cara": "Pilih cara pencarian: wilayah atau NIK.",
    "handle": "Data yang ditanggapi tidak ditemukan lagi (mungkin sudah ada putaran baru). Cari ulang lalu ajukan tanggapan.",
    "kategori": "Pilih jenis tanggapan.",
    "internal": "Terjadi kesalahan pada server. Coba lagi beberapa saat lagi.",
    "no_index": "Data putaran belum tersedia. Coba lagi beberapa saat lagi.",
}
MAX_NAME = 100


# --------------------------------------------------------------------------- rate limit


class TokenBuckets:
    """Per-client token bucket: `burst` requests at once, refilled at `per_minute`."""

    def __init__(self, per_minute: float, burst: int, clock=time.monotonic, max_clients: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = self.clock()
        with self.lock:
            tokens, last = self.buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self.buckets[client] = (tokens - 1.0, now)
                return 0.0
            self.buckets[client] = (tokens, now)
            if len(self.buckets) > self.max_clients:
                self._forget_full(now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else 3600.0

    def _forget_full(self, now: float) -> None:
        """Drop clients whose bucket has refilled: they are as if never seen."""
        self.buckets = {c: (t, last) for c, (t, last) in self.buckets.items()
                        if t + (now - last) * self.rate < self.burst}


# --------------------------------------------------------------------------- the round


class RoundWatcher:
    """The index of the round at `round_path`, reloaded in the background when its files
    change; a failed or half-finished reload keeps the previous index answering."""

    RETRY_SECONDS = 1.0

    def __init__(self, round_path: Path) -> None:
        self.round_path = Path(round_path)
        self.index: LookupIndex | None = None
        self.signature: tuple | None = None
        self.loading = False
        self.last_attempt = 0.0
        self.lock = threading.Lock()
        self._load(self._signature())
        if self.index is None:
            raise StatusIndexError(f"{round_path}: the status index could not be read")

    def _signature(self) -> tuple | None:
        try:
            directory = index_dir(self.round_path)
            stats = [os.stat(directory / name) for name in (INDEX_FILE, KEY_FILE)]
        except (OSError, StatusIndexError):
            return None
        return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def _load(self, signature: tuple | None) -> None:
        try:
            index = LookupIndex(index_dir(self.round_path))
        except (OSError, StatusIndexError, ValueError) as error:
            log.warning("status index not (re)loaded: %s", type(error).__name__)
            index = None
        with self.lock:
            if index is not None:
                self.index, self.signature = index, signature
                log.warning("status index loaded: round %s, %s entries", index.round_date, f"{index.entries:,}")
            self.loading = False

    def current(self) -> LookupIndex | None:
        """The index to answer with now; starts a reload when the files changed."""
        signature = self._signature()
        if signature is not None and signature != self.signature:
            with self.lock:
                start = not self.loading and time.monotonic() - self.last_attempt >= self.RETRY_SECONDS
                if start:
                    self.loading, self.last_attempt = True, time.monotonic()
            if start:
                threading.Thread(target=self._load, args=(signature,), daemon=True).start()
        return self.index


class NameBatcher:
    """Standardises the names of concurrent queries in one polars call: a batch starts as
    soon as the previous one is done, so waiting adds nothing under light load and the cost
    per name falls as load rises."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, asyncio.Future]] = []
        self.running = False

    async def standard(self, name: str) -> str:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((name, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    names = await asyncio.to_thread(standard_names, [name for name, _ in batch])
                except Exception as error:  # noqa: BLE001 - handed to each waiting request
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), name in zip(batch, names):
                    if not future.done():
                        future.set_result(name)
        finally:
            self.running = False


# --------------------------------------------------------------------------- regions


@cache
def region_children() -> dict[str, list[dict]]:
    """Parent code ("" for the country) -> its children [{kode, nama}], from the
    Kemendagri reference codes."""
    def read(name: str, parent: str | None) -> pl.DataFrame:
        frame = pl.read_csv(REFERENCE_DIR / name, infer_schema=False)
        return frame.select(induk=pl.col(parent) if parent else pl.lit(""), kode=pl.col("kode"), nama=pl.col("nama"))

    levels = pl.concat([
        read("provinces.csv", None), read("regencies.csv", "kode_provinsi"),
        read("districts.csv", "kode_kabupaten"), read("villages.csv", "kode_kecamatan"),
    ]).sort("induk", "kode")
    children: dict[str, list[dict]] = {}
    for parent, frame in levels.group_by("induk", maintain_order=True):
        children[parent[0]] = frame.select("kode", "nama").to_dicts()
    return children


@cache
def current_desa_codes() -> frozenset[str]:
    return frozenset(pl.read_csv(REFERENCE_DIR / "villages.csv", infer_schema=False)["kode"].to_list())


# --------------------------------------------------------------------------- the app


@dataclass
class Settings:
    round_path: Path
    objections_path: Path = objections.DEFAULT_QUEUE
    per_minute: float = field(default_factory=lambda: float(lookup_rules()["rate_per_minute"]))
    burst: int = field(default_factory=lambda: int(lookup_rules()["burst"]))


def reply(payload: object, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers={**HEADERS, **(headers or {})})


def refuse(key: str, status: int = 400) -> JSONResponse:
    return reply({"pesan": MESSAGES[key]}, status)


def page_data() -> dict:
    kinds = objections.categories()
    return {
        "kategori": [{"kode": k, "label": v["label"], "statuses": v["statuses"]} for k, v in kinds.items()],
        "max_alasan": objections.MAX_REASON,
    }


def guarded(handler):
    """Any failure inside a handler becomes a Bahasa 500 and one log line naming only the
    error's type: an exception's message or traceback may quote what was asked."""
    @functools.wraps(handler)
    async def wrapper(*args, **kwargs):
        try:
            return await handler(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            log.error("%s failed: %s", handler.__name__, type(error).__name__)
            return refuse("internal", 500)
    return wrapper


def create_app(settings: Settings) -> FastAPI:
    watcher = RoundWatcher(settings.round_path)
    buckets = TokenBuckets(settings.per_minute, settings.burst)
    batcher = NameBatcher()
    script = asset("status.js")
    page_headers = {**HEADERS, "Content-Security-Policy": content_security_policy(script, connect_self=True)}
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings, app.state.watcher, app.state.buckets = settings, watcher, buckets

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "?"

    async def admitted(request: Request) -> tuple[dict | None, JSONResponse | None]:
        """(the JSON body, None), or (None, the refusal): over the client's rate, or not a
        JSON object (JSON only: a cross-site form post cannot send it without a CORS
        preflight)."""
        wait = buckets.take(client_of(request))
        if wait:
            seconds = max(1, int(wait + 0.999))
            return None, reply({"pesan": f"Terlalu banyak permintaan dari alamat Anda. Coba lagi dalam {seconds} detik."},
                               429, {"Retry-After": str(seconds)})
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None, refuse("bad_request")
        try:
            body = await request.json()
        except ValueError:
            return None, refuse("bad_request")
        return (body, None) if isinstance(body, dict) else (None, refuse("bad_request"))

    @app.get("/", response_class=HTMLResponse)
    @guarded
    async def page() -> HTMLResponse:
        index = watcher.current()
        html = render("status.html.j2", script, connect_self=True, round_date=index.round_date if index else "-",
                      page_data=page_data())
        return HTMLResponse(html, headers=page_headers)

    @app.get("/api/wilayah")
    @guarded
    async def regions(induk: str = "") -> JSONResponse:
        return reply(region_children().get(induk.strip(), []), headers={"Cache-Control": "max-age=86400"})

    @app.post("/api/cek")
    @guarded
    async def check(request: Request) -> JSONResponse:
        body, refused = await admitted(request)
        if refused is not None:
            return refused
        name = body.get("nama")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            return refuse("nama")
        way = body.get("cara")
        if way == "nik":
            nik = normalise_nik(body.get("nik") if isinstance(body.get("nik"), str) else None)
            if nik is None:
                return refuse("nik")
        elif way == "wilayah":
            desa = normalise_desa(body.get("desa") if isinstance(body.get("desa"), str) else None)
            if desa is None or desa not in current_desa_codes():
                return refuse("desa")
        else:
            return refuse("cara")
        index = watcher.current()
        if index is None:
            return refuse("no_index", 503)
        standard = await batcher.standard(name)
        if way == "nik":
            answers, more = [index.by_nik(nik, standard)], False
        else:
            answers, more = index.by_region(desa, standard)
        if not answers:
            answers = [index.not_found()]
        return reply({"hasil": [a.public(with_handle=True) for a in answers], "lebih": more,
                      "round_date": index.round_date})

    @app.post("/api/tanggapan")
    @guarded
    async def objection(request: Request) -> JSONResponse:
        body, refused = await admitted(request)
        if refused is not None:
            return refused
        category = body.get("kategori")
        if category not in objections.categories():
            return refuse("kategori")
        index = watcher.current()
        handle = body.get("handle") if isinstance(body.get("handle"), str) else ""
        person = index.person_of_handle(handle) if index else None
        if person is None:
            return refuse("handle", 404)
        id_dtks, status = person
        reason = body.get("alasan") if isinstance(body.get("alasan"), str) else ""
        record = await asyncio.to_thread(
            objections.file_objection, settings.objections_path, id_dtks, category, reason, index.round_date,
            status, "status-server",
        )
        return reply({"nomor": record["id"], "pesan": "Tanggapan diterima dan akan diperiksa petugas pada putaran berikutnya. Nomor tanggapan:"})

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> JSONResponse:
        log.error("request failed: %s", type(error).__name__)
        return refuse("internal", 500)

    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    import uvicorn

    app = create_app(settings)
    index = app.state.watcher.index
    print(f"verval status-server: putaran {index.round_date}, {index.entries:,} entri; http://{host}:{port}/ "
          f"(tanggapan -> {settings.objections_path})", flush=True)
    # No access log: even without query strings, who asked when is nobody's business.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", server_header=False)
