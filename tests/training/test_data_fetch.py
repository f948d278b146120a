"""fetch: download from a local HTTP server on 127.0.0.1 (never the network), verify, extract,
convert."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.training.data_samples import write_cwfid_release, write_sesame_release, zip_folder
from training.data.cards import CARDS_ENV, load_card
from training.data.check import check_dataset
from training.data.fetch import extract_zip, fetch_dataset
from training.trainset import DatasetError

REPO = Path(__file__).resolve().parents[2]


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture(autouse=True)
def _shipped_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CARDS_ENV, raising=False)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback only, never through a proxy
    (tmp_path / "www").mkdir()
    srv = _Server(tmp_path / "www")
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def cwfid_zip(tmp_path: Path, server: _Server) -> tuple[str, str]:
    """A CWFID-style release zipped like a GitHub archive; returns (url, sha256)."""
    release = write_cwfid_release(tmp_path / "release", ids=tuple(range(1, 9)))
    archive = zip_folder(release, server.root / "cwfid.zip", "dataset-0123abc")
    return server.url("cwfid.zip"), hashlib.sha256(archive.read_bytes()).hexdigest()


def _cards_with_sha(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, sha: str) -> None:
    data = yaml.safe_load((REPO / "datasets" / "cwfid.yaml").read_text(encoding="utf-8"))
    data["download"].update(url=url, sha256=sha)
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "cwfid.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv(CARDS_ENV, str(tmp_path / "cards"))


def test_fetch_verifies_extracts_and_converts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              server: _Server, cwfid_zip: tuple[str, str]) -> None:
    url, sha = cwfid_zip
    _cards_with_sha(tmp_path, monkeypatch, url, sha)
    cache = tmp_path / "cache"
    result = fetch_dataset(load_card("cwfid"), cache, progress=False)
    assert result.verified and result.sha256 == sha
    assert result.archive == cache / "downloads" / "cwfid.zip"
    assert (cache / "raw" / "cwfid" / "dataset-0123abc" / "train_test_split.yaml").is_file()
    assert result.imported.data_yaml == cache / "cwfid" / "data.yaml"
    assert result.imported.layout == "native" and result.imported.boxes == 16
    assert check_dataset(cache / "cwfid").ok
    assert not list(cache.rglob("*.part"))
    # a verified archive in the cache is not downloaded again
    fetch_dataset(load_card("cwfid"), cache, progress=False)
    assert server.requests == ["/cwfid.zip"]


def test_checksum_mismatch_deletes_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                cwfid_zip: tuple[str, str]) -> None:
    url, sha = cwfid_zip
    _cards_with_sha(tmp_path, monkeypatch, url, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=f"checksum mismatch for {url}: expected sha256 "
                                           f"{'0' * 64}, got {sha}; the download was deleted"):
        fetch_dataset(load_card("cwfid"), cache, progress=False)
    assert not list((cache / "downloads").iterdir())
    assert not (cache / "cwfid").exists()


def test_sha256_option_overrides_the_card(tmp_path: Path, cwfid_zip: tuple[str, str]) -> None:
    url, sha = cwfid_zip
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch_dataset(load_card("cwfid"), tmp_path / "c", url=url, sha256="f" * 64, progress=False)
    result = fetch_dataset(load_card("cwfid"), tmp_path / "c", url=url, sha256=sha.upper(),
                           progress=False)
    assert result.verified


def test_unknown_checksum_needs_no_verify(tmp_path: Path, server: _Server,
                                          cwfid_zip: tuple[str, str]) -> None:
    url, sha = cwfid_zip
    card = load_card("cwfid")
    assert card.download.sha256 is None
    with pytest.raises(DatasetError, match="cannot verify the download of cwfid: .* --no-verify"):
        fetch_dataset(card, tmp_path / "cache", url=url, progress=False)
    assert server.requests == []  # refused before downloading anything
    result = fetch_dataset(card, tmp_path / "cache", url=url, verify=False, progress=False)
    assert not result.verified and result.sha256 == sha  # printed by the CLI for the card


def test_fetch_sesame_mirror_layout(tmp_path: Path, server: _Server) -> None:
    release = write_sesame_release(tmp_path / "release", bases=3)
    zip_folder(release, server.root / "s.zip", "WeedDetector-4fcd640")
    result = fetch_dataset(load_card("sesame"), tmp_path / "cache", url=server.url("s.zip"),
                           verify=False, progress=False)
    assert sum(result.imported.images.values()) == 9
    assert check_dataset(tmp_path / "cache" / "sesame").ok


def test_local_archive_path_works_offline(tmp_path: Path, cwfid_zip: tuple[str, str],
                                          server: _Server) -> None:
    _, sha = cwfid_zip
    result = fetch_dataset(load_card("cwfid"), tmp_path / "cache", url=str(server.root / "cwfid.zip"),
                           sha256=sha, progress=False)
    assert result.verified and server.requests == []


def test_http_error_and_bad_archive(tmp_path: Path, server: _Server) -> None:
    card = load_card("cwfid")
    with pytest.raises(DatasetError, match=r"download failed: http://127\.0\.0\.1:\d+/nope.zip: HTTP 404"):
        fetch_dataset(card, tmp_path / "cache", url=server.url("nope.zip"), verify=False,
                      progress=False)
    (server.root / "bad.zip").write_bytes(b"this is not a zip")
    with pytest.raises(DatasetError, match="cwfid.zip is not a valid zip archive"):
        fetch_dataset(card, tmp_path / "cache", url=server.url("bad.zip"), verify=False,
                      progress=False)
    assert not (tmp_path / "cache" / "raw" / "cwfid").exists()


def test_extract_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(DatasetError, match="unsafe path: ../outside.txt"):
        extract_zip(archive, tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "dest").exists()
