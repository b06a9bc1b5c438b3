"""What lets the diagnose page open and diagnose without a network: the service worker, the files it
keeps, the web manifest, and ONNX Runtime Web.

ONNX Runtime Web is not in git: ``make web-runtime`` (part of ``make test``) fetches the version
``package-lock.json`` pins (``npm ci``) and copies its WASM build into ``static/vendor/onnxruntime-web``
(a built wheel or sdist carries it, so installing one needs no npm). Without it the pages still work:
photos are diagnosed by the server. The service worker (``static/sw.js``) is served at ``/sw.js``
after one line naming its release (a hash of every file it keeps: a new paddyclf is a new worker with
a new cache) and those files. The large vendor files are sent gzip-compressed from copies made at
install time.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .. import __version__

STATIC = Path(__file__).parent / "static"
RUNTIME_PARENT = STATIC / "vendor"
RUNTIME = RUNTIME_PARENT / "onnxruntime-web"
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MANIFEST_URL = "/manifest.webmanifest"
SERVICE_WORKER_URL = "/sw.js"
ICON_SIZES = (192, 512)
THEME_COLOR = "#2f6b2f"
MISSING_RUNTIME = (
    "ONNX Runtime Web is missing ({folder}): browsers will send every photo to the server, and the page will "
    "not diagnose offline. Fetch it with `make web-runtime` (needs Node.js and npm), or install a built wheel."
)

# Python's table lacks some of these on some systems; the browser insists on the WASM one
MEDIA_TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript", ".webmanifest": "application/manifest+json"}
for _suffix, _type in MEDIA_TYPES.items():
    mimetypes.add_type(_type, _suffix)
KEPT_SUFFIXES = (".js", ".mjs", ".css", ".png", ".wasm")  # what the service worker keeps of static/


def runtime_available(folder: Path = RUNTIME) -> bool:
    return all((folder / name).is_file() for name in RUNTIME_FILES)


def _static_url(path: Path) -> str:
    return "/static/" + path.relative_to(STATIC).as_posix()


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class OfflineApp:
    """The files the service worker keeps (URLs), in two groups that change at their own pace: the
    page's own files (a new paddyclf) and ONNX Runtime Web (a new runtime version), each with a hash."""

    static: Path = STATIC

    @cached_property
    def _kept(self) -> list[Path]:
        return [p for p in sorted(self.static.rglob("*")) if p.is_file() and p.suffix in KEPT_SUFFIXES]

    @cached_property
    def assets(self) -> list[str]:
        """The page's scripts, styles and icons, and the manifest."""
        own = [p for p in self._kept if p.name != "sw.js" and not p.is_relative_to(RUNTIME_PARENT)]
        return [_static_url(p) for p in own] + [MANIFEST_URL]

    @cached_property
    def runtime_assets(self) -> list[str]:
        return [_static_url(p) for p in self._kept if p.is_relative_to(RUNTIME_PARENT)]

    @cached_property
    def release(self) -> str:
        files = [self.static / url.removeprefix("/static/") for url in self.assets if url.startswith("/static/")]
        files.append(self.static / "sw.js")
        return _digest(__version__.encode(), *(f.name.encode() + f.read_bytes() for f in files))

    @cached_property
    def runtime_release(self) -> str:
        version = RUNTIME / "VERSION"
        return _digest(version.read_bytes() if version.is_file() else b"none", *map(str.encode, self.runtime_assets))

    def service_worker(self, in_browser: bool) -> str:
        """The worker's script: what to keep (``in_browser``: the model too), then ``static/sw.js``."""
        header = [
            f"const PADDYCLF_RELEASE = {json.dumps(self.release)};",
            f"const PADDYCLF_ASSETS = {json.dumps(self.assets)};",
            f"const PADDYCLF_RUNTIME = {json.dumps(self.runtime_release)};",
            f"const PADDYCLF_RUNTIME_ASSETS = {json.dumps(self.runtime_assets if in_browser else [])};",
            f"const PADDYCLF_MODEL = {json.dumps(in_browser)};",
        ]
        return "\n".join(header) + "\n" + (self.static / "sw.js").read_text(encoding="utf-8")


def manifest(name: str, short_name: str, description: str, language: str) -> dict:
    """The web manifest: what a phone shows when the page is installed to its home screen."""
    return {
        "name": name,
        "short_name": short_name,
        "description": description,
        "lang": language,
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": THEME_COLOR,
        "icons": [
            {
                "src": f"/static/icons/icon-{size}.png",
                "sizes": f"{size}x{size}",
                "type": "image/png",
                "purpose": "any maskable",
            }
            for size in ICON_SIZES
        ],
    }
