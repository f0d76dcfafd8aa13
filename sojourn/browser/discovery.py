"""Finding a browser to launch and the ffmpeg Playwright records video with.

Order for each browser kind: the configured executable, then Playwright's own
installed build, then the system's: Debian's ``/usr/bin/chromium``, and for
Firefox Debian's ``/usr/bin/firefox-esr`` (or ``/usr/bin/firefox``). Playwright
cannot download browsers on machines without internet, so detect, never assume.

A configured executable is the operator's choice, not a hint: when it names
nothing that exists, that kind is unavailable (jobs fail with
``BROWSER_UNAVAILABLE`` naming the setting) rather than quietly running in
another build with other abilities (Playwright's Firefox cannot print; a stock
one can).

A stock Firefox (not Playwright's patched build) is driven over WebDriver BiDi,
behind :mod:`sojourn.browser.bidi_relay`; :attr:`BrowserChoice.bidi` says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import playwright

log = logging.getLogger(__name__)

# Measured on these machines (DESIGN.md): without the background-networking
# flags Chromium keeps dialing out and gets refused; QUIC is off for the same reason.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    # WebRTC may not open UDP paths around the egress proxy (it would reach any address).
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    # Chromium's own calls home (autofill, hints, translate) would go through the job's proxy and its log.
    "--disable-features=AutofillServerCommunication,OptimizationHints,Translate,MediaRouter",
    "--disable-client-side-phishing-detection",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
]

def sandbox_args() -> list[str]:
    """Chromium's sandbox where it can run; as root it cannot (Chromium refuses), so it goes without, and says so."""
    if os.geteuid() == 0 or os.environ.get("SOJOURN_CHROMIUM_NO_SANDBOX", "").lower() in ("1", "true", "yes"):
        return ["--no-sandbox"]
    return []


SYSTEM_CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
SYSTEM_FIREFOX = ("/usr/bin/firefox-esr", "/usr/bin/firefox")

# Firefox preferences for every Firefox Sojourn launches (Playwright's own defaults come first).
FIREFOX_PREFS = {
    # Loopback goes through the job's proxy too (Firefox sends it direct by default): the URL policy decides.
    "network.proxy.allow_hijacking_localhost": True,
    "network.proxy.no_proxies_on": "",
    # Nothing resolves or connects ahead of the page on its own: every connection is the page's, through the proxy.
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    "network.trr.mode": 5,
    "network.captive-portal-service.enabled": False,
    # WebRTC may not open UDP paths around the egress proxy (as Chromium's disable_non_proxied_udp).
    "media.peerconnection.ice.proxy_only": True,
    # Scrollbars over the page, as headless Chromium draws them: a 1280 px viewport lays out (and a full-page
    # screenshot comes out) 1280 px wide, not 1268.
    "ui.useOverlayScrollbars": 1,
}


@dataclass(frozen=True)
class BrowserChoice:
    kind: str
    executable: str | None  # None: Playwright's own build at its default path
    source: str  # "configured" | "playwright" | "system"
    bidi: bool = False  # a stock Firefox: WebDriver BiDi through the relay, not Playwright's own protocol


def _browsers_json() -> dict:
    path = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    return json.loads(path.read_text())


def browsers_path() -> Path:
    env = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if env and env != "0":
        return Path(env)
    return Path.home() / ".cache" / "ms-playwright"


def _revision(name: str) -> str | None:
    for b in _browsers_json()["browsers"]:
        if b["name"] == name:
            return b["revision"]
    return None


def playwright_build(kind: str) -> Path | None:
    """Playwright's own build of ``kind`` if it is installed here."""
    rev = _revision(kind)
    if not rev:
        return None
    base = browsers_path() / f"{kind}-{rev}"
    candidates = {
        "chromium": [base / "chrome-linux64" / "chrome", base / "chrome-linux" / "chrome"],
        "firefox": [base / "firefox" / "firefox"],
    }.get(kind, [])
    return next((p for p in candidates if p.exists()), None)


def is_playwright_firefox(executable: str) -> bool:
    """Playwright's patched Firefox (its own protocol) rather than a stock one (WebDriver BiDi)?

    Playwright's builds live in its browsers folder (``.../ms-playwright/firefox-<rev>/firefox/firefox``).
    """
    found = shutil.which(executable) or executable
    path = Path(found).resolve()
    parts = path.parts
    return "ms-playwright" in parts or any(p.startswith("firefox-") and p[8:].isdigit() for p in parts) or (
        browsers_path().resolve() in path.parents
    )


def configured_exists(configured: str) -> bool:
    return Path(configured).exists() or shutil.which(configured) is not None


def find_browser(kind: str, configured: str | None) -> BrowserChoice | None:
    """The browser of ``kind`` to launch, or None when there is none (or the configured one does not exist)."""
    if configured:
        if configured_exists(configured):
            bidi = kind == "firefox" and not is_playwright_firefox(configured)
            return BrowserChoice(kind, configured, "configured", bidi=bidi)
        log.warning("configured %s executable %s does not exist: no %s on this worker", kind, configured, kind)
        return None
    if playwright_build(kind):
        return BrowserChoice(kind, None, "playwright")
    system = {"chromium": SYSTEM_CHROMIUM, "firefox": SYSTEM_FIREFOX}.get(kind, ())
    for path in system:
        if Path(path).exists():
            return BrowserChoice(kind, path, "system", bidi=kind == "firefox")
    return None


def ensure_ffmpeg() -> Path | None:
    """Link the system ffmpeg where Playwright looks for its own, so video records.

    Returns the path Playwright will use, or None when no ffmpeg exists.
    """
    rev = _revision("ffmpeg")
    if not rev:
        return None
    target = browsers_path() / f"ffmpeg-{rev}" / "ffmpeg-linux"
    if target.exists():
        return target
    system = shutil.which("ffmpeg")
    if not system:
        return None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():  # dangling link from an old install
            target.unlink()
        target.symlink_to(system)
    except OSError as exc:
        log.warning("could not link %s to %s: %s", system, target, exc)
        return None
    log.info("video: linked %s -> %s", target, system)
    return target
