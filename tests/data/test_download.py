"""Downloads from a local HTTP server (127.0.0.1): full, resumed, checksummed, unpacked."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qgmrn.cli import main as cli_main
from qgmrn.data.download import DownloadError, download, fetch, unpack


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


HUMANS = {
    "CLEVR-Humans/CLEVR-Humans-train.json": b'{"questions": []}' + b" " * 5000,
    "CLEVR-Humans/CLEVR-Humans-val.json": b'{"questions": []}',
}


class Server:
    """Serves `payload` at any path; honours `Range` unless `ignore_range`; `cut_after` bytes
    makes the next response stop early (a dropped connection)."""

    def __init__(self, payload: bytes):
        self.payload, self.ignore_range, self.cut_after = payload, False, None
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                data, rng = server.payload, self.headers.get("Range")
                server.ranges.append(rng)
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
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
                body = data[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/CLEVR-Humans.zip"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server(make_zip(HUMANS))
    yield s
    s.close()


def test_full_download_unpacks_to_the_released_layout(server, tmp_path):
    out = download("clevr-humans", tmp_path, server.url, progress=False)
    assert out == tmp_path / "CLEVR-Humans"
    for name, data in HUMANS.items():
        assert (tmp_path / name).read_bytes() == data
    digest = hashlib.sha256(server.payload).hexdigest()
    assert (tmp_path / "CLEVR-Humans.zip.sha256").read_text().split()[0] == digest
    assert not (tmp_path / "CLEVR-Humans.zip.part").exists()
    # a second call neither downloads nor unpacks again
    n = len(server.ranges)
    assert download("clevr-humans", tmp_path, server.url, progress=False, sha256=digest) == out
    assert len(server.ranges) == n


def test_truncated_part_file_is_resumed_with_a_range_request(server, tmp_path):
    (tmp_path / "CLEVR-Humans.zip.part").write_bytes(server.payload[:1234])
    digest = fetch(server.url, tmp_path / "CLEVR-Humans.zip", progress=False)
    assert server.ranges == ["bytes=1234-"]
    assert (tmp_path / "CLEVR-Humans.zip").read_bytes() == server.payload
    assert digest == hashlib.sha256(server.payload).hexdigest()


def test_dropped_connection_then_rerun_resumes(server, tmp_path):
    server.cut_after = 3000
    with pytest.raises(DownloadError, match="run again to resume"):
        fetch(server.url, tmp_path / "a.zip", progress=False)
    assert (tmp_path / "a.zip.part").stat().st_size == 3000
    fetch(server.url, tmp_path / "a.zip", progress=False)
    assert server.ranges == [None, "bytes=3000-"]
    assert (tmp_path / "a.zip").read_bytes() == server.payload


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    server.ignore_range = True
    (tmp_path / "a.zip.part").write_bytes(b"stale bytes")
    fetch(server.url, tmp_path / "a.zip", progress=False)
    assert (tmp_path / "a.zip").read_bytes() == server.payload


def test_complete_part_file_gets_416_and_is_accepted(server, tmp_path):
    (tmp_path / "a.zip.part").write_bytes(server.payload)
    digest = fetch(server.url, tmp_path / "a.zip", progress=False)
    assert digest == hashlib.sha256(server.payload).hexdigest()


def test_checksum_mismatch_is_an_error_and_nothing_is_unpacked(server, tmp_path):
    with pytest.raises(DownloadError, match="checksum mismatch .*expected sha256 0+, got"):
        download("clevr-humans", tmp_path, server.url, sha256="0" * 64, progress=False)
    assert not (tmp_path / "CLEVR-Humans").exists()


def test_archive_without_top_folder_is_unpacked_into_it(tmp_path):
    archive = tmp_path / "flat.zip"
    archive.write_bytes(make_zip({"images/train/CLEVR_train_000000.png": b"png",
                                  "questions/CLEVR_train_questions.json": b"{}"}))  # fmt: skip
    out = unpack(archive, tmp_path / "data", "CLEVR_v1.0", progress=False)
    assert (out / "images" / "train" / "CLEVR_train_000000.png").read_bytes() == b"png"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["CLEVR_v1.0"]


def test_unsafe_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"CLEVR_v1.0/../../evil.txt": b"x"}))
    with pytest.raises(DownloadError, match="unsafe member"):
        unpack(archive, tmp_path / "data", "CLEVR_v1.0", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "CLEVR_v1.0").exists()


def test_command_line(server, tmp_path, capsys):
    args = ["download", "clevr-humans", "--to", str(tmp_path), "--url", server.url]
    assert cli_main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "CLEVR-Humans")
    assert cli_main([*args, "--no-progress", "--sha256", "ab" * 32]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot download http://127.0.0.1:9/x.zip"):
        fetch("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", progress=False, timeout=5)
