"""`ganzoo data download`: a local HTTP server on 127.0.0.1, never the internet."""
from __future__ import annotations

import http.server
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from ganzoo.cli import main
from ganzoo.data import download
from ganzoo.data.aligned import AlignedDataset
from ganzoo.data.download import MARKER, download_dataset, fetch, safe_extract
from ganzoo.errors import DataError


def png_bytes(width: int = 16, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_tar(members: dict[str, bytes], top: str = "facades") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def facades_archive() -> bytes:
    image = png_bytes()
    return make_tar({f"{split}/{i}.png": image for split in ("train", "val", "test") for i in range(2)})


class Server:
    """Serves ``files`` (path -> bytes) with HTTP Range support, recording the requests."""

    def __init__(self, files: dict[str, bytes], honour_range: bool = True) -> None:
        self.files = files
        self.honour_range = honour_range
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                data = server.files.get(self.path)
                server.ranges.append(self.headers.get("Range"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                if header and server.honour_range:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server({"/facades.tar.gz": facades_archive()})
    yield s
    s.close()


def test_download_extracts_the_layout_recipes_expect(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    folder = download_dataset("facades", root, url=server.url("/facades.tar.gz"))
    assert folder == root / "facades"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["test", "train", "val"]
    assert (folder / MARKER).is_file()
    assert not (root / ".downloads").exists(), "the archive is removed after extraction"
    dataset = AlignedDataset(folder, "train", load_size=8, crop_size=8, preprocess="none", flip=False)
    assert len(dataset) == 2 and dataset[0]["A"].shape == (3, 8, 8)
    # A second call finds the finished dataset and does not touch the network.
    server.ranges.clear()
    assert download_dataset("facades", root, url=server.url("/facades.tar.gz")) == folder
    assert server.ranges == []


def test_interrupted_download_resumes_with_a_range_request(server: Server, tmp_path: Path) -> None:
    data = server.files["/facades.tar.gz"]
    dest = tmp_path / "facades.tar.gz"
    (tmp_path / "facades.tar.gz.part").write_bytes(data[:100])
    fetch(server.url("/facades.tar.gz"), dest)
    assert server.ranges == ["bytes=100-"]
    assert dest.read_bytes() == data


def test_server_ignoring_range_restarts_from_scratch(tmp_path: Path) -> None:
    data = facades_archive()
    s = Server({"/f.tar.gz": data}, honour_range=False)
    try:
        (tmp_path / "f.tar.gz.part").write_bytes(b"garbage that must not stay at the front")
        fetch(s.url("/f.tar.gz"), tmp_path / "f.tar.gz")
    finally:
        s.close()
    assert (tmp_path / "f.tar.gz").read_bytes() == data


def test_size_and_checksum_are_verified(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="catalogue says 5"):
        fetch(server.url("/facades.tar.gz"), tmp_path / "x.tar.gz", expected_size=5)
    with pytest.raises(DataError, match="SHA-256"):
        download_dataset("facades", tmp_path / "d", url=server.url("/facades.tar.gz"), sha256="0" * 64)
    assert not (tmp_path / "d" / "facades").exists()


def test_offline_fails_at_once_naming_the_url_and_the_manual_route(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/facades.tar.gz"
    result = CliRunner().invoke(main, ["data", "download", "facades", "--root", str(tmp_path), "--url", url])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert url in output
    assert "--archive" in output and download.PIX2PIX_URL.format(name="facades") in output


def test_manual_archive_is_installed_without_the_network(tmp_path: Path) -> None:
    archive = tmp_path / "facades.tar.gz"
    archive.write_bytes(facades_archive())
    result = CliRunner().invoke(main, ["data", "download", "facades", "--root", str(tmp_path / "ds"),
                                       "--archive", str(archive)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds" / "facades" / "train" / "0.png").is_file()
    assert archive.is_file(), "a user's own archive is never deleted"


def test_unaligned_zip_layout(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for folder in ("trainA", "trainB", "testA", "testB"):
            zf.writestr(f"horse2zebra/{folder}/1.png", png_bytes(8, 8))
    s = Server({"/horse2zebra.zip": buffer.getvalue()})
    try:
        folder = download_dataset("horse2zebra", tmp_path, url=s.url("/horse2zebra.zip"))
    finally:
        s.close()
    assert (folder / "trainA" / "1.png").is_file() and (folder / "testB" / "1.png").is_file()


def test_unknown_and_manual_only_datasets(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="did you mean 'facades'") as info:
        download_dataset("facade", tmp_path)
    assert "facades" in str(info.value)
    with pytest.raises(DataError, match="cityscapes-dataset.com"):
        download_dataset("cityscapes", tmp_path)


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        ok = tarfile.TarInfo("facades/train/ok.png")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize("member, data, message", [
    (tarfile.TarInfo("../escape.txt"), b"x", "escape the target"),
    (tarfile.TarInfo("facades/../../escape.txt"), b"x", "escape the target"),
    (tarfile.TarInfo("/tmp/absolute.txt"), b"x", "absolute path"),
    (_link("facades/train/link.png", "/etc/passwd", tarfile.SYMTYPE), b"", "is a link"),
    (_link("facades/train/inside.png", "ok.png", tarfile.SYMTYPE), b"", "is a link"),
    (_link("facades/train/hard.png", "../../../etc/passwd", tarfile.LNKTYPE), b"", "is a link"),
])
def test_malicious_tar_is_refused_before_anything_is_written(tmp_path: Path, member: tarfile.TarInfo,
                                                             data: bytes, message: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_with(member, data))
    target = tmp_path / "out" / "inner"
    with pytest.raises(DataError, match=message):
        safe_extract(archive, target)
    assert not any(target.rglob("*")), "nothing may be extracted from a refused archive"
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "escape.txt").exists()


def test_malicious_zip_is_refused(tmp_path: Path) -> None:
    for name, message in (("../escape.png", "escape the target"), ("/abs.png", "absolute path")):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr(name, b"x")
        archive = tmp_path / "evil.zip"
        archive.write_bytes(buffer.getvalue())
        with pytest.raises(DataError, match=message):
            safe_extract(archive, tmp_path / "out")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("ds/trainA/link.png")
        info.external_attr = (0o120777 << 16)  # a symlink entry, as `zip --symlinks` writes it
        zf.writestr(info, "/etc/passwd")
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out2")


def test_list_shows_the_catalogue() -> None:
    result = CliRunner().invoke(main, ["data", "download", "--list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("facades", "edges2shoes", "horse2zebra", "night2day", "cityscapes"):
        assert name in result.output
