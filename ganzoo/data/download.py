"""``ganzoo data download NAME``: the official pix2pix / CycleGAN / BicycleGAN datasets, fetched safely.

The catalogue follows the official download scripts (pytorch-CycleGAN-and-pix2pix
``datasets/download_pix2pix_dataset.sh`` and ``download_cyclegan_dataset.sh``, BicycleGAN
``datasets/download_dataset.sh``): paired A|B datasets are ``.tar.gz`` files under
``http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/`` (BicycleGAN uses the same archives),
unpaired ones ``.zip`` files under ``.../cyclegan/datasets/``.

A download is

- **streamed** to ``ROOT/.downloads/NAME.<ext>.part`` with a rich progress bar;
- **resumable**: a ``.part`` left by an interrupted download is continued with an HTTP ``Range``
  request (started again if the server ignores it);
- **verified**: the byte count against ``Content-Length`` and the catalogue size, and SHA-256
  where a digest is known (``--sha256`` or the catalogue); the digest is written beside the data;
- **extracted safely** into a staging folder: absolute paths, ``..`` components, symlinks, hard
  links and device files are refused before anything is written (for tar files on top of
  :mod:`tarfile`'s ``"data"`` filter), then the dataset folder is moved to ``ROOT/NAME``, the
  layout the recipes expect (``datasets/facades/train/*.jpg``, ``datasets/horse2zebra/trainA``).

Without a network connection it fails at once naming the URL and the manual route: download the
file by any means and run ``ganzoo data download NAME --archive FILE``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ganzoo.errors import DataError, did_you_mean

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"

#: Written into ``ROOT/NAME`` once a dataset is complete; its presence means "nothing to do".
MARKER = ".ganzoo-dataset.json"
CHUNK = 1 << 20
CONNECT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class DatasetSource:
    """Where one official dataset lives and how it is laid out once extracted.

    ``folders`` are sub-folders the extracted dataset must contain (checked after extraction).
    ``size`` (bytes) and ``sha256`` are verified when known; ``None`` means unknown.
    """

    name: str
    url: str
    layout: str  # "aligned" (A|B side by side) or "unaligned" (trainA/trainB ...)
    used_by: str
    folders: tuple[str, ...]
    description: str
    size: int | None = None
    sha256: str | None = None
    manual_only: str | None = None  # set when the dataset cannot be redistributed

    @property
    def archive_name(self) -> str:
        return PurePosixPath(self.url).name


def _pix2pix(name: str, description: str, folders: tuple[str, ...] = ("train", "val")) -> DatasetSource:
    return DatasetSource(name, PIX2PIX_URL.format(name=name), "aligned", "pix2pix, BicycleGAN", folders, description)


def _cyclegan(name: str, description: str, folders: tuple[str, ...] = ("trainA", "trainB", "testA", "testB")
              ) -> DatasetSource:
    return DatasetSource(name, CYCLEGAN_URL.format(name=name), "unaligned", "CycleGAN", folders, description)


CATALOGUE: dict[str, DatasetSource] = {s.name: s for s in [
    _pix2pix("facades", "CMP Facades: label maps <-> building facades (400 images)", ("train", "val", "test")),
    _pix2pix("maps", "Google Maps: aerial photo <-> map (1096 train)"),
    _pix2pix("edges2shoes", "UT Zappos50K shoes: HED edges <-> photo (50k)"),
    _pix2pix("edges2handbags", "Amazon handbags: HED edges <-> photo (137k)"),
    _pix2pix("night2day", "Transient attributes: night <-> day (20k)"),
    DatasetSource("cityscapes", PIX2PIX_URL.format(name="cityscapes"), "aligned", "pix2pix, BicycleGAN",
                  ("train", "val"), "Cityscapes: semantic labels <-> street photos",
                  manual_only="Cityscapes' licence does not allow redistribution: register at "
                              "https://www.cityscapes-dataset.com, download gtFine_trainvaltest.zip and "
                              "leftImg8bit_trainvaltest.zip, and pair them with the official "
                              "datasets/prepare_cityscapes_dataset.py into ROOT/cityscapes/{train,val}"),
    _cyclegan("horse2zebra", "ImageNet horses <-> zebras"),
    _cyclegan("apple2orange", "ImageNet apples <-> oranges"),
    _cyclegan("summer2winter_yosemite", "Flickr Yosemite summer <-> winter"),
    _cyclegan("monet2photo", "Monet paintings <-> Flickr photos"),
    _cyclegan("cezanne2photo", "Cezanne paintings <-> Flickr photos"),
    _cyclegan("ukiyoe2photo", "Ukiyo-e prints <-> Flickr photos"),
    _cyclegan("vangogh2photo", "Van Gogh paintings <-> Flickr photos"),
    _cyclegan("iphone2dslr_flower", "iPhone <-> DSLR flower photos (shallow depth of field)"),
    _cyclegan("ae_photos", "a few photos used in the CycleGAN demo (test only)", ()),
    _cyclegan("grumpifycat", "cats <-> grumpy cat", ("trainA", "trainB")),
    _cyclegan("mini", "a tiny unpaired set for smoke tests", ()),
    _cyclegan("mini_pix2pix", "a tiny paired set for smoke tests", ()),
    _cyclegan("mini_colorization", "a tiny colourisation set for smoke tests", ()),
]}


def get_source(name: str) -> DatasetSource:
    """The catalogue entry called ``name`` (a DataError with close names otherwise)."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    raise DataError(f"unknown dataset {name!r}; official datasets: {', '.join(CATALOGUE)}",
                    hint=did_you_mean(name, CATALOGUE) or "`ganzoo data download --list` shows each one")


def manual_hint(source: DatasetSource, root: Path) -> str:
    return (f"download {source.url} by any means (browser, curl -L -O, a mirror) and run "
            f"`ganzoo data download {source.name} --root {root} --archive PATH/{source.archive_name}`")


# -- download --------------------------------------------------------------------------------------
ProgressFactory = Callable[[str, int | None, int], Any]


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _RichProgress:
    """A rich bar showing bytes, speed and time left for one file."""

    def __init__(self, label: str, total: int | None, done: int) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self.task = self.progress.add_task(label, total=total, completed=done)

    def update(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def __enter__(self) -> _RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def rich_progress(label: str, total: int | None, done: int) -> _RichProgress:
    """The default progress display of :func:`fetch`."""
    return _RichProgress(label, total, done)


def _total_from_headers(response: Any, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return int(length) + offset
    return None


def fetch(url: str, dest: Path, *, expected_size: int | None = None, progress: ProgressFactory | None = None,
          manual: str = "") -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with an HTTP Range request when it exists.

    Raises:
        DataError: the server cannot be reached (at once, with the ``manual`` route), answers with
            an error, or sends a different number of bytes than it announced.
    """
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ganzoo", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S)  # noqa: S310 (http(s) only, below)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is already complete (or longer than the file)
            if expected_size is None or offset == expected_size:
                os.replace(part, dest)
                return dest
            part.unlink()
            return fetch(url, dest, expected_size=expected_size, progress=progress, manual=manual)
        raise DataError(f"{url} answered HTTP {exc.code} {exc.reason}", hint=manual or None) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot download {url}: {reason} (offline, or the server is unreachable)",
                        hint=manual or None) from None
    dest.parent.mkdir(parents=True, exist_ok=True)  # only once the server answered: offline leaves nothing
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range: start again from the first byte
        total = _total_from_headers(response, offset)
        if expected_size is not None and total is not None and total != expected_size:
            raise DataError(f"{url} is {total} bytes, but the catalogue says {expected_size}",
                            hint="the file on the server changed; report it, or pass --archive with a copy you trust")
        factory = progress or (lambda *_: _NoProgress())
        received = offset
        with open(part, "ab" if offset else "wb") as f, factory(dest.name, total, offset) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except OSError as exc:
                    raise DataError(f"the download of {url} broke off after {received} bytes: {exc}",
                                    hint="run the same command again: it resumes where it stopped") from None
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise DataError(f"the download of {url} stopped after {received} of {total} bytes",
                        hint="run the same command again: it resumes where it stopped")
    if expected_size is not None and received != expected_size:
        part.unlink()
        raise DataError(f"{url}: got {received} bytes, expected {expected_size}; the partial file was deleted")
    os.replace(part, dest)
    return dest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# -- safe extraction -------------------------------------------------------------------------------
#: An archive may unpack to at most this many times its own size (images barely compress: the
#: official archives unpack to about 1x) and never more than MAX_UNPACKED_BYTES, nor hold more than
#: MAX_MEMBERS entries; more is a decompression bomb unless the user raises the cap
#: (``ganzoo data download --max-unpacked-gb``).
MAX_UNPACK_RATIO = 100
MIN_UNPACKED_CAP = 1 << 30
MAX_UNPACKED_BYTES = 64 << 30
MAX_MEMBERS = 1_000_000


def unpack_limit(archive: Path, max_bytes: int | None = None) -> int:
    """The most bytes ``archive`` may unpack to: ``max_bytes`` when given, else 100x its size (at least
    1 GiB, at most 64 GiB)."""
    if max_bytes is not None:
        return int(max_bytes)
    return min(MAX_UNPACKED_BYTES, max(MIN_UNPACKED_CAP, MAX_UNPACK_RATIO * archive.stat().st_size))


def _check_totals(archive: Path, target: Path, sizes: list[int], max_bytes: int | None,
                  max_members: int | None) -> None:
    """Refuse, before anything is written, an archive that would unpack to too much or too many files."""
    members = max_members if max_members is not None else MAX_MEMBERS
    gib = 1 << 30
    if len(sizes) > members:
        raise DataError(f"refused to extract {archive}: {len(sizes):,} members, more than the limit of {members:,}",
                        hint="a decompression bomb? if you trust the archive, raise the limit with --max-members")
    total = sum(sizes)
    limit = unpack_limit(archive, max_bytes)
    if total > limit:
        raise DataError(f"refused to extract {archive}: it unpacks to {total / gib:.2f} GiB, more than the limit of "
                        f"{limit / gib:.2f} GiB for a {archive.stat().st_size / 2**20:.1f} MiB archive",
                        hint="a decompression bomb? if you trust the archive, raise the limit with "
                             "--max-unpacked-gb")
    try:
        free = shutil.disk_usage(target).free
    except OSError:
        return
    if total > free:
        raise DataError(f"cannot extract {archive}: it unpacks to {total / gib:.2f} GiB but {target} has "
                        f"{free / gib:.2f} GiB free", hint="free some disk space or choose another --root")


def _check_member_name(archive: Path, name: str) -> None:
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"refused to extract {archive}: member {name!r} has an absolute path",
                        hint="the archive is corrupt or malicious; nothing was extracted")
    if ".." in posix.parts:
        raise DataError(f"refused to extract {archive}: member {name!r} would escape the target folder",
                        hint="the archive is corrupt or malicious; nothing was extracted")


def _extract_tar(archive: Path, target: Path, max_bytes: int | None = None, max_members: int | None = None) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = [], 0
            most, limit = (max_members if max_members is not None else MAX_MEMBERS), unpack_limit(archive, max_bytes)
            for m in tar:  # stops reading (and decompressing) as soon as a cap is passed
                members.append(m)
                total += m.size
                if len(members) > most or total > limit:
                    break
            _check_totals(archive, target, [m.size for m in members], max_bytes, max_members)
            for m in members:
                _check_member_name(archive, m.name)
                if m.issym() or m.islnk():
                    raise DataError(f"refused to extract {archive}: member {m.name!r} is a link to {m.linkname!r}",
                                    hint="image datasets contain only files and folders; nothing was extracted")
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"refused to extract {archive}: member {m.name!r} is not a file or folder")
            # The "data" filter repeats the path checks and drops permissions/owners we never need.
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot extract {archive}: {exc}",
                        hint="the file is truncated or not a tar archive; delete it and download again") from None


def _extract_zip(archive: Path, target: Path, max_bytes: int | None = None, max_members: int | None = None) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_totals(archive, target, [i.file_size for i in infos], max_bytes, max_members)
            for info in infos:
                _check_member_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise DataError(f"refused to extract {archive}: member {info.filename!r} is a symbolic link",
                                    hint="image datasets contain only files and folders; nothing was extracted")
            root = target.resolve()
            for info in infos:
                out = (target / info.filename).resolve()
                if root not in out.parents and out != root:
                    raise DataError(f"refused to extract {archive}: member {info.filename!r} escapes the target")
                zf.extract(info, target)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"cannot extract {archive}: {exc}",
                        hint="the file is truncated or not a zip archive; delete it and download again") from None


def safe_extract(archive: Path, target: Path, *, max_bytes: int | None = None,
                 max_members: int | None = None) -> None:
    """Extract a ``.tar(.gz)`` or ``.zip`` into ``target``, refusing anything that could escape it.

    Every member is checked before the first byte is written: absolute paths, ``..`` components,
    symbolic and hard links and special files raise a DataError, and so does an archive that would
    unpack to more than :func:`unpack_limit` bytes (``max_bytes`` raises it), more members than
    ``max_members`` (default :data:`MAX_MEMBERS`), or more than the disk has free.
    """
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, target, max_bytes, max_members)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, target, max_bytes, max_members)
    else:
        raise DataError(f"{archive} is neither a zip nor a tar archive",
                        hint="delete it and download again (an HTML error page saved as the archive?)")


def _dataset_folder(staging: Path, name: str) -> Path:
    """The folder inside an extracted archive that holds the dataset (normally ``NAME/``)."""
    entries = [p for p in staging.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if (staging / name).is_dir():
        return staging / name
    dirs = [p for p in entries if p.is_dir()]
    if len(dirs) == 1 and len(entries) == 1:
        return dirs[0]
    return staging  # the archive holds the split folders directly


# -- the whole thing -------------------------------------------------------------------------------
def download_dataset(name: str, root: str | os.PathLike[str] = "datasets", *, url: str | None = None,
                     archive: str | os.PathLike[str] | None = None, sha256: str | None = None,
                     keep_archive: bool = False, progress: ProgressFactory | None = None,
                     max_unpacked_bytes: int | None = None, max_members: int | None = None) -> Path:
    """Fetch, verify and extract an official dataset into ``ROOT/NAME``; returns that folder.

    Args:
        name: a catalogue name (``facades``, ``horse2zebra`` ...).
        root: the datasets folder (recipes use ``datasets/``).
        url: download from this address instead (a mirror, or a local server in tests).
        archive: use this already downloaded file instead of the network.
        sha256: expected SHA-256 of the archive (overrides the catalogue's, when it has one).
        keep_archive: keep ``ROOT/.downloads/<archive>`` after extracting.
        progress: progress display factory; :func:`rich_progress` on the command line.
        max_unpacked_bytes, max_members: raise the decompression-bomb caps of :func:`safe_extract`.

    A folder already completed by an earlier download is left alone.
    """
    source = get_source(name)
    root = Path(root)
    target = root / source.name
    if (target / MARKER).is_file():
        return target
    if source.manual_only and archive is None and url is None:
        raise DataError(f"{source.name} cannot be downloaded automatically: {source.manual_only}")
    if target.exists() and any(target.iterdir()):
        raise DataError(f"{target} already exists and was not made by `ganzoo data download`",
                        hint="move it away or delete it, or point --root elsewhere")
    url = url or source.url
    if not url.startswith(("http://", "https://")) and archive is None:
        raise DataError(f"--url must be an http(s) address, got {url!r}")
    manual = manual_hint(source, root)
    downloads = root / ".downloads"
    if archive is not None:
        archive_path = Path(archive)
        if not archive_path.is_file():
            raise DataError(f"archive {archive_path} does not exist")
    else:
        archive_path = fetch(url, downloads / source.archive_name, expected_size=source.size, progress=progress,
                             manual=manual)
    digest = sha256_of(archive_path)
    expected = sha256 or source.sha256
    if expected and digest.lower() != expected.lower():
        if archive is None:
            archive_path.unlink()
        raise DataError(f"{archive_path} has SHA-256 {digest}, expected {expected}",
                        hint="the download was corrupted or the file changed; download it again")
    staging = root / f".extract-{source.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        safe_extract(archive_path, staging, max_bytes=max_unpacked_bytes, max_members=max_members)
        folder = _dataset_folder(staging, source.name)
        missing = [f for f in source.folders if not (folder / f).is_dir()]
        if missing:
            found = sorted(p.name for p in folder.iterdir())
            raise DataError(f"{archive_path} does not look like {source.name}: no {', '.join(missing)} folder(s) "
                            f"(it has: {', '.join(found) or 'nothing'})")
        if target.exists():
            target.rmdir()  # empty (checked above)
        root.mkdir(parents=True, exist_ok=True)
        os.replace(folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    info = {"name": source.name, "url": url if archive is None else None, "archive": archive_path.name,
            "sha256": digest, "bytes": archive_path.stat().st_size, "layout": source.layout}
    (target / MARKER).write_text(json.dumps(info, indent=2))
    if archive is None and not keep_archive:
        archive_path.unlink(missing_ok=True)
        try:
            downloads.rmdir()
        except OSError:
            pass
    return target


__all__ = ["CATALOGUE", "DatasetSource", "MAX_MEMBERS", "download_dataset", "fetch", "get_source", "rich_progress",
           "safe_extract", "sha256_of", "unpack_limit"]
