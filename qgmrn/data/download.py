"""Download and unpack CLEVR v1.0 (18 GB) or CLEVR-Humans, resumably.

The archive streams to `TO/<name>.zip.part`; an interrupted download continues from the bytes
already there with an HTTP `Range` request (a server that ignores `Range` makes us start over).
The SHA-256 of every finished archive is computed while it streams and written to
`TO/<name>.zip.sha256`. We do not know the official archives' checksums (their publishers give
none), so none is checked unless you pass one (`sha256=`/`--sha256`); pass the recorded value on
another machine to check that both got the same bytes. The archive is then unpacked to its
released layout: `TO/CLEVR_v1.0/{images,questions,scenes}/...` or `TO/CLEVR-Humans/*.json`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from tqdm.auto import tqdm

BLOCK = 1 << 20  # bytes per read


@dataclass(frozen=True)
class Source:
    url: str
    top: str  # the folder the archive unpacks to


SOURCES: dict[str, Source] = {
    "clevr": Source("https://dl.fbaipublicfiles.com/clevr/CLEVR_v1.0.zip", "CLEVR_v1.0"),
    "clevr-humans": Source(
        "https://cs.stanford.edu/people/jcjohns/iep/CLEVR-Humans.zip", "CLEVR-Humans"
    ),
}


class DownloadError(RuntimeError):
    """A download that failed or produced the wrong bytes; the message says what to do."""


def _sha256_of(path: Path):  # -> hashlib's hash object
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h


def fetch(
    url: str, dest: str | os.PathLike, *, progress: bool = True, timeout: float = 60.0
) -> str:
    """Stream `url` to `dest` (resuming `dest.part` if present); returns the SHA-256 hex digest.

    `dest` appears only once complete (renamed from `dest.part`).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "qgmrn-download"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the .part is already whole
            total = _range_total(e.headers.get("Content-Range"))
            if total is not None and total != have:
                raise DownloadError(
                    f"{part} holds {have} bytes but {url} has {total}; remove it and retry"
                ) from None
            os.replace(part, dest)
            return _sha256_of(dest).hexdigest()
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot download {url}: {e}") from None

    with response:
        if have and response.status == 206:
            start = have
            total = _range_total(response.headers.get("Content-Range"))
            digest = _sha256_of(part)  # continue the hash over the bytes already there
            mode = "ab"
        else:  # a fresh download, or a server that ignored Range: start over
            start, total, digest, mode = 0, None, hashlib.sha256(), "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        bar = tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
        )
        written = start
        try:
            with open(part, mode) as f:
                while block := response.read(BLOCK):
                    f.write(block)
                    digest.update(block)
                    written += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as e:  # a dropped connection
            raise DownloadError(
                f"download of {url} interrupted after {written} bytes ({e}); "
                f"run again to resume from {part}"
            ) from None
        finally:
            bar.close()
    if total is not None and written != total:
        raise DownloadError(
            f"download of {url} stopped at {written} of {total} bytes; run again to resume "
            f"from {part}"
        )
    os.replace(part, dest)
    return digest.hexdigest()


def _range_total(content_range: str | None) -> int | None:
    """The total size in a `Content-Range: bytes a-b/total` (or `bytes */total`) header."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def unpack(
    archive: str | os.PathLike, to: str | os.PathLike, top: str, progress: bool = True
) -> Path:
    """Extract a zip into `to/top/` (members already under `top/` keep their paths).

    Extraction goes to a hidden folder renamed into place at the end, so an interrupted unpack
    leaves no half-filled `to/top`. Members escaping the folder (absolute, `..`) are refused.
    """
    to = Path(to)
    final = to / top
    staging = to / f".{top}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            names = [PurePosixPath(m.filename) for m in members]
            nested = all(n.parts and n.parts[0] == top for n in names)
            for m, name in zip(
                tqdm(members, desc=f"unpack {top}", unit="file", disable=not progress),
                names,
                strict=True,
            ):
                if name.is_absolute() or ".." in name.parts:
                    raise DownloadError(f"{archive}: refusing unsafe member {m.filename!r}")
                rel = PurePosixPath(*name.parts[1:]) if nested else name
                if not rel.parts:
                    continue
                target = staging.joinpath(*rel.parts)
                if m.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, BLOCK)
    except zipfile.BadZipFile as e:
        shutil.rmtree(staging, ignore_errors=True)
        msg = f"{archive} is not a valid zip ({e}); remove it and run again"
        raise DownloadError(msg) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def download(
    name: str,
    to: str | os.PathLike = "data",
    url: str | None = None,
    *,
    sha256: str | None = None,
    progress: bool = True,
    extract: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download data set `name` (`clevr` or `clevr-humans`) into `to`; returns the unpacked folder
    (or the archive when `extract=False`). `url` overrides the source; `sha256` is checked."""
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(SOURCES)}")
    source = SOURCES[name]
    url = url or source.url
    to = Path(to)
    archive = to / (Path(urlparse(url).path).name or f"{source.top}.zip")
    record = archive.with_name(archive.name + ".sha256")
    if archive.exists() and record.exists():
        digest = record.read_text().split()[0]
    else:
        if archive.exists():  # downloaded earlier without a record: hash it, do not refetch
            digest = _sha256_of(archive).hexdigest()
        else:
            digest = fetch(url, archive, progress=progress, timeout=timeout)
        record.write_text(f"{digest}  {archive.name}\n")
    if sha256 is not None and digest.lower() != sha256.strip().lower():
        raise DownloadError(
            f"checksum mismatch for {archive}: expected sha256 {sha256.strip().lower()}, got "
            f"{digest}; remove {archive} and {record.name} and run again"
        )
    if not extract:
        return archive
    marker = to / source.top / ".qgmrn-unpacked"
    if marker.exists() and marker.read_text().strip() == digest:
        return to / source.top
    final = unpack(archive, to, source.top, progress=progress)
    marker.write_text(digest + "\n")
    return final
