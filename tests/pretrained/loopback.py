"""A loopback HTTP server (127.0.0.1, a thread) in the Hugging Face Hub's URL layout and a plain one.

    server = LoopbackServer(); server.start()
    server.add_hub_file("nvidia/segformer-b0", "<40-hex commit>", "pytorch_model.bin", data)
    url = server.add_url_file("resnet18-1234abcd.pth", data)      # http://127.0.0.1:port/files/...

Hub layout: `HEAD|GET /{repo}/resolve/{revision}/{file}` (revision: the commit or
`main`). An LFS file (any file added with `lfs=True`) answers like the Hub: a 302
to `/cdn/{sha256}` with `X-Repo-Commit`, `X-Linked-Etag` (its SHA-256) and
`X-Linked-Size`; the CDN path serves the bytes with `ETag`, `Content-Length`,
`X-Repo-Commit` and HTTP Range. Unknown files are 404 with the Hub's
`X-Error-Code: EntryNotFound`. Plain layout: `/files/{name}` (Range supported)
and `/redirect/{name}` (a 302 to the former). `requests` records every request;
`truncate_next` cuts the next `truncations` bodies after that many bytes and
drops the connection (an interrupted download); `corrupt` serves other bytes than those
the headers describe.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from dataclasses import dataclass


@dataclass
class _HubFile:
    commit: str
    data: bytes
    lfs: bool


class LoopbackServer:
    def __init__(self):
        self.hub: dict[tuple[str, str], _HubFile] = {}   # (repo, filename) -> file
        self.refs: dict[tuple[str, str], str] = {}        # (repo, "main") -> commit
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.truncate_next: int | None = None
        self.truncations = 1                              # responses truncate_next applies to
        self.corrupt: set[str] = set()                    # request paths served altered
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ content

    def add_hub_file(self, repo: str, commit: str, filename: str, data: bytes,
                     lfs: bool = True) -> str:
        """Serves `data` as `filename` of `repo` at `commit` (and at main); its SHA-256."""
        self.hub[(repo, filename)] = _HubFile(commit, data, lfs)
        self.refs[(repo, "main")] = commit
        return hashlib.sha256(data).hexdigest()

    def add_url_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.url}/files/{name}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "LoopbackServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: LoopbackServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        owner = self.owner
        owner.requests.append((self.command, self.path))
        hub = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)",
                           self.path)
        cdn = re.fullmatch(r"/cdn/(?P<repo>[^/]+/[^/]+)/(?P<file>.+)", self.path)
        if hub:
            return self._resolve(hub["repo"], hub["rev"], hub["file"], body)
        if cdn:
            entry = owner.hub.get((cdn["repo"], cdn["file"]))
            if entry is None:
                return self._missing()
            sha = hashlib.sha256(entry.data).hexdigest()
            return self._send(entry.data, body, {"ETag": f'"{sha}"',
                                                 "X-Repo-Commit": entry.commit})
        plain = re.fullmatch(r"/(?P<kind>files|redirect)/(?P<name>[^/]+)", self.path)
        if plain and plain["name"] in owner.files:
            if plain["kind"] == "redirect":
                return self._redirect(f"{owner.url}/files/{plain['name']}", {})
            return self._send(owner.files[plain["name"]], body, {})
        return self._missing()

    def _resolve(self, repo: str, revision: str, filename: str, body: bool) -> None:
        owner = self.owner
        entry = owner.hub.get((repo, filename))
        commit = owner.refs.get((repo, revision), revision)
        if entry is None or commit != entry.commit:
            return self._missing(commit=commit if entry is not None else None)
        sha = hashlib.sha256(entry.data).hexdigest()
        if entry.lfs:
            return self._redirect(f"{owner.url}/cdn/{repo}/{filename}", {
                "X-Repo-Commit": entry.commit, "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(entry.data)), "ETag": f'"{sha}"'})
        git_sha = hashlib.sha1(entry.data).hexdigest()
        return self._send(entry.data, body, {"ETag": f'"{git_sha}"',
                                             "X-Repo-Commit": entry.commit})

    def _missing(self, commit: str | None = None) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("X-Error-Message", "Entry not found")
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _redirect(self, location: str, headers: dict) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, data: bytes, body: bool, headers: dict) -> None:
        owner = self.owner
        if self.path in owner.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "") or "")
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        payload = data[start:]
        if owner.truncate_next is not None:
            payload = payload[:owner.truncate_next]
            owner.truncations -= 1
            if owner.truncations <= 0:
                owner.truncate_next, owner.truncations = None, 1
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)
