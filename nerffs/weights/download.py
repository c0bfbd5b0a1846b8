"""Verified, resumable downloads of registry assets (standard library HTTP only).

A download goes to ``<target>.part``; a dropped connection is resumed with an HTTP ``Range`` request (a server
that ignores Range restarts the file); the finished ``.part`` is checked (published size and SHA-256 where the
registry has them, the SHA-256 recorded in the checksum ledger at an earlier download, and readability in its
format) and only then renamed onto the target with ``os.replace``, so the target is never half-written; its
SHA-256 is then recorded in the ledger (``nerffs.weights.ledger``) if it was not yet. Sources are the
``mirrors`` (base URLs holding the weights-directory layout) followed by the registry's URLs, tried in order.
Assets under non-commercial or registration terms are refused before any request is made unless their name is
in ``accept_licences``.
"""
from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nerffs.errors import ChecksumError, DownloadError, LicenceNotAcceptedError, WeightsMissingError
from nerffs.utils.io import file_sha256
from nerffs.weights.ledger import Record, forget_hint, lookup_record, mismatch_reason, record
from nerffs.weights.paths import cli_command, missing_message, weights_dir
from nerffs.weights.registry import Asset, lookup
from nerffs.weights.verify import USABLE_STATES, inspect_file, published_mismatch, readable

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "nerffs-weights/1 (+python urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


@dataclass(frozen=True)
class SourceFailure:
    """Why one URL did not deliver the file."""

    url: str
    """The source."""
    kind: str
    """'unreachable' (no connection), 'http' (error status), 'dropped' (too many drops), 'checksum' (not the
    published file, or unreadable) or 'changed' (not the file recorded in the ledger)."""
    reason: str
    """One-line explanation."""


class _SourceFailed(Exception):
    def __init__(self, failure: SourceFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


# ---- licences and sources --------------------------------------------------------------------------------------------
def licence_notice(asset: Asset) -> str:
    """One line stating the asset's terms and where to read them."""
    return f"{asset.name}: {asset.licence}; terms: {asset.terms_url}"


def require_acceptance(asset: Asset, accept_licences: Iterable[str]) -> None:
    """Raise unless ``asset`` needs no acceptance or its name is in ``accept_licences``.

    Raises:
        LicenceNotAcceptedError: one line with the terms URL and the flag that accepts them.
    """
    if asset.needs_acceptance and asset.name not in set(accept_licences):
        raise LicenceNotAcceptedError(
            f"{asset.name} is distributed under restricted terms ({asset.licence}); read {asset.terms_url} and, "
            f"if you accept them, re-run with --accept-licence {asset.name} (Python: accept_licences=['{asset.name}'])")


def sources(asset: Asset, mirrors: Sequence[str] | None = None) -> list[str]:
    """URLs to try in order: ``<mirror>/<asset.filename>`` for each mirror, then the registry URLs."""
    urls = [f"{m.rstrip('/')}/{asset.filename}" for m in (mirrors or ())] + list(asset.urls)
    return list(dict.fromkeys(urls))


# ---- one HTTP request ------------------------------------------------------------------------------------------------
class _NoBar:
    def update(self, n: int) -> None:
        """Ignore progress."""


@contextlib.contextmanager
def _byte_bar(total: int | None, initial: int, desc: str, enabled: bool) -> Iterator[Any]:
    """A tqdm byte counter on stderr (or a no-op when disabled or tqdm is unavailable)."""
    if not enabled:
        yield _NoBar()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a requirement
        yield _NoBar()
        return
    with tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
              leave=False, dynamic_ncols=True) as bar:
        yield bar


def _response_span(resp: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """(byte position the body starts at, full file size or None) for a 200 or 206 response."""
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch((resp.headers.get("Content-Range") or "").strip())
        if match is None or int(match.group(1)) != offset:
            raise DownloadError(f"server answered the range request for byte {offset} with "
                                f"{resp.headers.get('Content-Range')!r}")
        return offset, (int(match.group(3)) if match.group(3) != "*" else None)
    if offset:
        log.info("server ignored the Range header; restarting from byte 0")
    return 0, (int(length) if length is not None else None)


def _request_once(url: str, part: Path, offset: int, *, timeout: float, show_progress: bool, desc: str) -> bool:
    """GET ``url`` (from ``offset`` if > 0) appending to ``part``; True when the whole file has arrived.

    Raises:
        urllib.error.URLError / HTTPError: the request could not be made or was refused.
        OSError, http.client.HTTPException: the connection failed while reading (the bytes so far are kept).
    """
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
        start, total = _response_span(resp, offset)
        received = start
        part.parent.mkdir(parents=True, exist_ok=True)  # only now: an offline attempt leaves no directories behind
        with open(part, "ab" if start else "wb") as f, _byte_bar(total, start, desc, show_progress) as bar:
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received > total:
        raise DownloadError(f"{url} sent {received} B but announced {total} B")
    return total is None or received == total


def _range_done(exc: urllib.error.HTTPError, offset: int) -> bool:
    """For a 416 answer to a resume: whether the ``.part`` already holds the whole file."""
    match = _UNSATISFIED_RANGE.fullmatch((exc.headers.get("Content-Range") or "").strip())
    return match is not None and int(match.group(1)) == offset


# ---- one source, with resume -----------------------------------------------------------------------------------------
def _fetch(url: str, part: Path, expected_size: int | None, *, timeout: float, retries: int, show_progress: bool,
           desc: str) -> None:
    """Download ``url`` into ``part``, resuming after dropped connections up to ``retries`` times.

    Raises:
        _SourceFailed: this source cannot deliver the file (the ``.part`` is kept for a later resume).
    """
    drops = 0
    while True:
        offset = part.stat().st_size if part.is_file() else 0
        if expected_size is not None and offset >= expected_size:
            if offset == expected_size:
                return
            part.unlink()  # longer than the file can be: start again
            offset = 0
        try:
            if _request_once(url, part, offset, timeout=timeout, show_progress=show_progress, desc=desc):
                return
            reason = "connection closed before the end of the file"
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset and _range_done(exc, offset):
                return
            if exc.code == 416:
                part.unlink(missing_ok=True)
            raise _SourceFailed(SourceFailure(url, "http", f"HTTP {exc.code} {exc.reason} from {url}")) from None
        except urllib.error.URLError as exc:  # no connection at all: DNS, refused, unreachable, timeout on connect
            kind = "unreachable" if drops == 0 else "dropped"
            raise _SourceFailed(SourceFailure(url, kind, f"cannot reach {urlsplit(url).netloc} ({exc.reason})")) \
                from None
        except DownloadError as exc:  # nonsensical range answer or oversized body: this source is unusable
            part.unlink(missing_ok=True)
            raise _SourceFailed(SourceFailure(url, "http", str(exc))) from None
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout or protocol error while reading
            reason = f"{type(exc).__name__}: {exc}"
        drops += 1
        got = part.stat().st_size if part.is_file() else 0
        if drops > retries:
            raise _SourceFailed(SourceFailure(
                url, "dropped", f"{url}: connection dropped {drops} times, last at {got} B ({reason}); re-run to "
                                "resume"))
        log.warning("%s: %s at %d B; resuming (%d/%d)", desc, reason, got, drops, retries)


def _verify_download(asset: Asset, part: Path, url: str, recorded: Record | None) -> str:
    """Check a finished ``.part``; returns its SHA-256. On failure delete it and raise ``_SourceFailed``."""
    digest = file_sha256(part)
    kind, problem = "checksum", published_mismatch(asset, part.stat().st_size, digest)
    if problem is None:
        ok, detail = readable(part, Path(asset.filename).suffix)
        problem = None if ok else detail
    if problem is None and recorded is not None and recorded.sha256 != digest:
        kind, problem = "changed", mismatch_reason(asset, recorded, digest, url)
    if problem is not None:
        part.unlink(missing_ok=True)
        reason = problem if kind == "changed" else f"download from {url} is corrupt: {problem}"
        raise _SourceFailed(SourceFailure(url, kind, reason))
    return digest


# ---- public ----------------------------------------------------------------------------------------------------------
def _final_error(asset: Asset, target: Path, failures: list[SourceFailure],
                 root: str | os.PathLike | None) -> DownloadError:
    if all(f.kind == "unreachable" for f in failures):
        hosts = ", ".join(dict.fromkeys(urlsplit(f.url).netloc for f in failures))
        reason = failures[-1].reason.split("(", 1)[-1].rstrip(")")
        return DownloadError(f"cannot reach {hosts} (offline? {reason}); to install {asset.name} by hand, "
                             f"{asset.manual} and place it at {target}, then run `{cli_command(['--check'], root)}`")
    summary = "; ".join(f.reason for f in failures)
    if any(f.kind in ("checksum", "changed") for f in failures):
        hint = f"; {forget_hint(asset, root)}" if any(f.kind == "changed" for f in failures) else ""
        return ChecksumError(f"could not download {asset.name}: {summary}; the bad data was deleted and nothing "
                             f"was written to {target}{hint}")
    return DownloadError(f"could not download {asset.name}: {summary}")


def download(name: str, root: str | os.PathLike | None = None, *, accept_licences: Iterable[str] = (),
             mirrors: Sequence[str] | None = None, timeout: float = 30, show_progress: bool = True, retries: int = 5,
             force: bool = False, registry: Mapping[str, Asset] | None = None) -> Path:
    """Download asset ``name`` into the weights directory, verified and atomically.

    An existing file that verifies (or cannot be verified) is kept; a corrupt one is downloaded again; one that
    differs from the SHA-256 recorded in the checksum ledger is reported (``ChecksumError``) and left alone unless
    ``force``. The SHA-256 of a file the ledger does not know yet is recorded there.

    Args:
        name: registry name.
        root: weights directory (default ``weights_dir()``).
        accept_licences: names whose restricted terms the user accepts.
        mirrors: base URLs holding the weights-directory layout, tried before the registry URLs.
        timeout: seconds a connect or read may stall.
        show_progress: show a byte progress bar on stderr.
        retries: resumes allowed per source after dropped connections.
        force: download even if a usable file is present.
        registry: table to look ``name`` up in (default ``REGISTRY``).

    Returns:
        the path of the verified file.

    Raises:
        LicenceNotAcceptedError: restricted terms not accepted (raised before any request or file write).
        WeightsMissingError: no direct URL exists; the message says how to get the file by hand.
        ChecksumError: every source that answered delivered a corrupt file or one whose SHA-256 differs from the
            recorded one (nothing is left at the target); or the file present changed since it was recorded.
        LedgerError: the checksum ledger exists but is unreadable.
        DownloadError: offline, HTTP errors, or too many dropped connections (a ``.part`` is kept to resume).
    """
    asset = lookup(name, registry)
    target = weights_dir(root) / asset.filename
    recorded = lookup_record(asset, root)
    if target.is_file() and not force:
        found = inspect_file(asset, target, root=root, recorded=recorded)
        if found.state == "changed":  # maybe replaced on purpose: never overwrite it without being asked
            raise ChecksumError(found.detail)
        if found.state in USABLE_STATES:
            log.info("%s: already at %s (%s)", name, target, found.detail)
            if recorded is None and found.sha256 is not None:
                record(asset, root, found.sha256, target.stat().st_size, "found in place")
            return target
        log.warning("%s: %s is corrupt (%s); downloading it again", name, target, found.detail)
    urls = sources(asset, mirrors)
    if not urls:
        raise WeightsMissingError(missing_message(asset, root))
    require_acceptance(asset, accept_licences)
    if asset.needs_acceptance:  # accepted: still state the terms, visibly
        log.warning("licence accepted for %s", licence_notice(asset))
    part = target.with_name(target.name + ".part")
    failures: list[SourceFailure] = []
    for url in urls:
        log.info("%s: downloading %s", name, url)
        try:
            _fetch(url, part, asset.size, timeout=timeout, retries=retries, show_progress=show_progress, desc=name)
            digest = _verify_download(asset, part, url, recorded)
        except _SourceFailed as exc:
            log.info("%s", exc.failure.reason)  # the final error sums up every source
            failures.append(exc.failure)
            continue
        os.replace(part, target)
        log.info("%s: saved %s (sha256 %s)", name, target, digest)
        if recorded is None:
            record(asset, root, digest, target.stat().st_size, url)
        else:
            log.info("%s: sha256 matches the one recorded %s", name, recorded.recorded)
        return target
    raise _final_error(asset, target, failures, root)
