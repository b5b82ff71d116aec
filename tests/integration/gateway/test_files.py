"""``/v1/files`` through the official SDK: upload, list, retrieve, content, delete."""

from __future__ import annotations

import io
import json

import openai
import pytest

pytestmark = pytest.mark.integration


def _batch_lines(n: int) -> bytes:
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "all-MiniLM-L6-v2", "input": f"text number {i}"},
        }
        for i in range(n)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_a_file_round_trips(openai_client, gateway, state_dir):
    data = _batch_lines(5)
    made = openai_client.files.create(file=("requests.jsonl", io.BytesIO(data)), purpose="batch")
    assert made.id.startswith("file-") and made.bytes == len(data)
    assert made.filename == "requests.jsonl" and made.purpose == "batch"
    assert openai_client.files.retrieve(made.id).bytes == len(data)
    assert openai_client.files.content(made.id).read() == data
    # The bytes are in the store the workers read (the default folder under the state dir).
    assert (state_dir / "state" / "files" / f"{made.id}.jsonl").read_bytes() == data
    listed = [f.id for f in openai_client.files.list(purpose="batch")]
    assert made.id in listed
    gone = openai_client.files.delete(made.id)
    assert gone.deleted is True and gone.id == made.id
    with pytest.raises(openai.NotFoundError):
        openai_client.files.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.files.content(made.id)
    assert not (state_dir / "state" / "files" / f"{made.id}.jsonl").exists()


def test_list_pages_with_after_and_limit(openai_client):
    made = [
        openai_client.files.create(
            file=(f"f{i}.jsonl", io.BytesIO(_batch_lines(1))), purpose="batch"
        ).id
        for i in range(3)
    ]
    page = openai_client.files.list(limit=2, order="asc")
    seen = [f.id for f in page]  # the SDK follows `after` for the next pages itself
    assert [i for i in seen if i in made] == made


def test_bad_uploads_are_bad_requests(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune")
    assert caught.value.param == "purpose"
    with pytest.raises(openai.BadRequestError):
        openai_client.files.create(file=("x.jsonl", io.BytesIO(b"")), purpose="batch")
