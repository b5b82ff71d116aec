"""Real AWS-protocol servers on loopback, for tests: moto (S3, SSM, IAM) and a SageMaker
runtime ``InvokeEndpoint`` server that computes real embeddings.

Both are reached through boto3's own endpoint chain (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``), with fake credentials: nothing here can touch
a real AWS account.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

REGION = "us-east-1"
#: A bucket the worker's IAM user is denied (to show "access denied").
PRIVATE_BUCKET = "private-models"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """Env that keeps boto3 away from any real account, config or metadata service."""
    return {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class MotoServer:
    """moto's HTTP server on a free loopback port, with IAM enforced.

    Two users: ``admin`` (everything; tests set up buckets and parameters with it) and
    ``worker`` (everything but :data:`PRIVATE_BUCKET`), so a worker can meet a real
    403 Access Denied.
    """

    _shared: MotoServer | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> MotoServer:
        """The process's one server (moto's backends and IAM switch are process-wide, so
        two servers in one process would share state anyway); started on first use."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls().start()
            return cls._shared

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.admin_env: dict[str, str] = {}
        self.worker_env: dict[str, str] = {}

    def start(self) -> MotoServer:
        import boto3
        import requests

        self._server.start()
        setup = self._env("setup", "setup")
        iam = boto3.session.Session(**_creds(setup)).client("iam", endpoint_url=self.url)
        everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        deny = {
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{PRIVATE_BUCKET}", f"arn:aws:s3:::{PRIVATE_BUCKET}/*"],
        }
        self.admin_env = self._user(iam, "admin", [everything])
        self.worker_env = self._user(iam, "worker", [everything, deny])
        # from now on every request must be signed by a known user and is authorised
        requests.post(f"{self.url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        return self

    def _user(self, iam: Any, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": statements}
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return self._env(key["AccessKeyId"], key["SecretAccessKey"])

    def _env(self, key_id: str, secret: str) -> dict[str, str]:
        return {
            **base_env(),
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
        }

    def client(self, service: str, env: dict[str, str] | None = None) -> Any:
        """A boto3 client for ``service`` as the admin (or the user of ``env``)."""
        import boto3

        session = boto3.session.Session(**_creds(env or self.admin_env))
        return session.client(service, endpoint_url=self.url)

    def stop(self) -> None:
        self._server.stop()


def _creds(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


@dataclass
class Endpoint:
    """How one fake endpoint behaves."""

    encode: Callable[[list[str]], np.ndarray] | None = None
    throttle: int = 0  # answer this many requests with 429 ThrottlingException first
    error: tuple[int, str, str] | None = None  # (status, code, message) for every request
    tokens: bool = False  # answer token vectors per text instead of one vector
    requests: list[int] = field(default_factory=list)  # texts per request received
    bodies: list[int] = field(default_factory=list)  # body bytes per request received


class SageMakerServer:
    """Speaks the SageMaker runtime protocol: ``POST /endpoints/<name>/invocations`` with
    ``{"inputs": [...]}`` -> ``{"embeddings": [[...]]}`` (see workers/models/sagemaker.py)."""

    def __init__(self, endpoints: dict[str, Endpoint]) -> None:
        self.endpoints = endpoints
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def env(self) -> dict[str, str]:
        return {
            **base_env(),
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def start(self) -> SageMakerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        match = re.fullmatch(r"/endpoints/([^/]+)/invocations", path)
        endpoint = self.endpoints.get(match.group(1)) if match else None
        if endpoint is None:
            name = match.group(1) if match else path
            return _error(
                400, "ValidationError", f"Endpoint {name} of account 123456789012 not found."
            )
        with self._lock:
            texts = json.loads(body)["inputs"]
            endpoint.requests.append(len(texts))
            endpoint.bodies.append(len(body))
            if endpoint.throttle > 0:
                endpoint.throttle -= 1
                return _error(429, "ThrottlingException", "Rate exceeded")
        if endpoint.error is not None:
            return _error(*endpoint.error)
        assert endpoint.encode is not None
        vectors = np.asarray(endpoint.encode(texts), dtype=np.float32)
        if endpoint.tokens:  # two identical "token" rows per text: their mean is the row
            data: Any = [[row.tolist(), row.tolist()] for row in vectors]
        else:
            data = {"embeddings": vectors.tolist()}
        return 200, {"Content-Type": "application/json"}, json.dumps(data).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, payload = server._answer(self.path, body)
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(payload))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
    return status, headers, json.dumps({"message": message}).encode()
