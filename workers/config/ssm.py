"""Model config from AWS SSM Parameter Store.

``ssm:/name`` reads one parameter (String or SecureString) holding the whole JSON;
``ssm:/prefix/`` (trailing slash) reads one parameter per model under the prefix, for
configs over the 4 KB / 8 KB size limit of one parameter. Endpoints and credentials
come from boto3's own chain (``AWS_ENDPOINT_URL``, profiles, instance roles...).
"""

from __future__ import annotations

import json
from typing import Any

from workers.errors import ConfigError


def read_ssm_config(name: str) -> dict[str, Any]:
    """Return the decoded config stored under ``name`` (a parameter or a prefix/)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.session.Session().client("ssm")  # the shared default one is not thread-safe
    try:
        if name.endswith("/"):
            return _read_prefix(client, name)
        value = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"ssm:{name}: {code}: {exc}") from exc
    except BotoCoreError as exc:
        raise ConfigError(f"ssm:{name}: {exc}") from exc
    return _decode(value, f"ssm:{name}")


def _read_prefix(client: Any, prefix: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    paginator = client.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=prefix, Recursive=False, WithDecryption=True):
        for param in page["Parameters"]:
            model = param["Name"][len(prefix) :]
            config[model] = _decode(param["Value"], f"ssm:{param['Name']}")
    if not config:
        raise ConfigError(f"ssm:{prefix}: no parameters under this prefix")
    return config


def _decode(value: str, where: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
