"""Drives a running `purser serve --simulate` through the official openai and anthropic SDKs, exactly as their
documentation shows, and checks every answer with the SDKs' own types.

usage: sdk_serve_check.py BASE_URL KEY_A KEY_B READ_KEY_A WORKDIR

KEY_A and KEY_B are submit keys of two projects; READ_KEY_A a read key of KEY_A's project. Checks, in order:
uploads (and a retried upload answering the same file), file listing, retrieval and content, batch creates (a
create retried after a dropped connection makes one batch), polling to completion, output lines, list pages,
cancel, a bad file failing with per-line errors, the errors the SDKs raise (404, 401, 403, 400 without
retries), that project B sees nothing of project A, and the Anthropic Message Batches API end to end. Prints
one "ok:" line per check; exits 1 at the first that fails.
"""
import json
from decimal import Decimal
import os
import socket
import sys
import threading
import time

import anthropic
import httpx2 as httpx
import openai
from anthropic.types.messages import DeletedMessageBatch, MessageBatch
from openai.types import Batch, FileDeleted, FileObject

sys.path.insert(0, os.path.dirname(__file__))
from validate_sdk_shapes import anthropic_line, openai_line  # noqa: E402

BASE, KEY_A, KEY_B, READ_A, WORK = sys.argv[1:6]
DEADLINE = time.time() + 240


def ok(what):
    print("ok:", what, flush=True)


def expect(error_class, call, what):
    try:
        call()
    except error_class as error:
        ok(f"{what} raises {error_class.__name__} ({error.status_code if hasattr(error, 'status_code') else ''})")
        return error
    raise AssertionError(f"{what}: expected {error_class.__name__}, got an answer")


def write(name, lines):
    path = os.path.join(WORK, name)
    with open(path, "w", encoding="utf-8") as file:
        for line in lines:
            file.write(json.dumps(line) + "\n")
    return path


def chat_line(number, model="gpt-5-mini"):
    return {"custom_id": f"req-{number}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "max_tokens": 60, "messages": [{"role": "user", "content": f"Say hello number {number}."}]}}


def wait_openai(client, batch_id, until=("completed", "failed", "expired", "cancelled")):
    while time.time() < DEADLINE:
        batch = client.batches.retrieve(batch_id)
        if batch.status in until:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not end in time")


class DroppingProxy:
    """Forwards connections to the server, but answers the first POST /v1/batches by closing the connection after
    the server has answered it: the create happened, the client never heard, and the SDK retries."""

    def __init__(self, target):
        host, port = target.replace("http://", "").split(":")
        self.target = (host, int(port))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.dropped = 0
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        client.settimeout(30)
        upstream = socket.create_connection(self.target, timeout=30)
        try:
            while True:
                request = self.read_message(client)
                if request is None:
                    return
                upstream.sendall(request)
                response = self.read_message(upstream)
                if request.startswith(b"POST /v1/batches ") and self.dropped == 0:
                    self.dropped += 1
                    return
                client.sendall(response)
        finally:
            client.close()
            upstream.close()

    @staticmethod
    def read_message(sock):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            rest += chunk
        return head + b"\r\n\r\n" + rest


def check_openai():
    client = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY_A, max_retries=2)
    other = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY_B, max_retries=0)
    reader = openai.OpenAI(base_url=BASE + "/v1", api_key=READ_A, max_retries=0)

    path = write("batch.jsonl", [chat_line(n) for n in range(1, 6)])
    raw = client.files.with_raw_response.create(file=open(path, "rb"), purpose="batch")
    assert raw.headers.get("x-request-id"), "every answer carries x-request-id"
    uploaded = FileObject.model_validate(json.loads(raw.text))
    assert uploaded.purpose == "batch" and uploaded.bytes == os.path.getsize(path) and uploaded.filename == "batch.jsonl"
    ok(f"files.create -> {uploaded.id} ({uploaded.bytes} bytes), a FileObject")
    again = client.files.create(file=open(path, "rb"), purpose="batch")
    assert again.id == uploaded.id, "the same upload again is the same file"
    ok("a retried upload answers the same file")
    assert client.files.retrieve(uploaded.id).id == uploaded.id
    listed = [file.id for file in client.files.list()]
    assert uploaded.id in listed
    ok("files.retrieve and files.list")
    content = client.files.content(uploaded.id).read()
    assert content == open(path, "rb").read(), "the content is the bytes uploaded"
    ok("files.content gives back the bytes")

    # A create whose answer is lost on the way (a dropped connection) is retried by the SDK: one batch results.
    proxy = DroppingProxy(BASE)
    through = openai.OpenAI(base_url=f"http://127.0.0.1:{proxy.port}/v1", api_key=KEY_A, max_retries=2)
    raw = through.batches.with_raw_response.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"team": "search"})
    batch = Batch.model_validate(json.loads(raw.text))
    assert proxy.dropped == 1, "the proxy dropped the first create"
    assert int(raw.http_request.headers.get("x-stainless-retry-count", "0")) >= 1, "the SDK retried the create"
    same = [b.id for b in client.batches.list() if b.input_file_id == uploaded.id]
    assert same == [batch.id], f"a create retried after a dropped connection made one batch, not {same}"
    ok(f"batches.create retried after a dropped connection -> one batch {batch.id} ({batch.status})")
    assert batch.endpoint == "/v1/chat/completions" and batch.completion_window == "24h" and batch.metadata == {"team": "search"}

    done = wait_openai(client, batch.id)
    shown = json.loads(client.batches.with_raw_response.retrieve(batch.id).text)
    Batch.model_validate(shown)
    plan = shown["purser"]
    assert Decimal(plan["estimated_usd"]) < Decimal(plan["baseline_usd"]), f"the plan saves nothing: {plan}"
    assert done.status == "completed", f"status {done.status}, errors {done.errors}"
    assert done.request_counts.total == 5 and done.request_counts.completed == 5 and done.request_counts.failed == 0
    assert done.output_file_id and done.completed_at and done.in_progress_at
    ok(f"polled to completed: {done.request_counts}")
    output = client.files.content(done.output_file_id).text.splitlines()
    assert len(output) == 5
    kinds = {openai_line(json.loads(line)) for line in output}
    assert sorted(json.loads(line)["custom_id"] for line in output) == [f"req-{n}" for n in range(1, 6)]
    assert all("purser" in json.loads(line) for line in output)
    models = sorted({json.loads(line)["purser"]["model"] for line in output})
    ok(f"output file: 5 lines in OpenAI's batch output format ({kinds}), served by {models}: estimate ${plan['estimated_usd']} against the baseline ${plan['baseline_usd']}")
    assert done.output_file_id in [file.id for file in client.files.list(purpose="batch_output")]
    ok("the output file is listed among the project's files")

    # Pages: three more batches, listed one at a time.
    created = [batch.id]
    for n in range(3):
        extra = write(f"extra-{n}.jsonl", [chat_line(10 * n + k) for k in range(1, 3)])
        created.append(client.batches.create(
            input_file_id=client.files.create(file=open(extra, "rb"), purpose="batch").id,
            endpoint="/v1/chat/completions", completion_window="24h").id)
    page = client.batches.list(limit=1)
    assert len(page.data) == 1 and page.has_more
    seen = [b.id for b in client.batches.list(limit=1)]
    assert sorted(seen) == sorted(created) and len(seen) == len(set(seen)), f"pages gave {seen}"
    assert seen[0] == created[-1], "newest first"
    ok(f"batches.list pages one at a time through all {len(seen)} batches, newest first")

    # Routing hints in metadata: a quality tier and a deadline of Purser's own, and a per-line key that wins over both.
    hinted_lines = [chat_line(n) for n in range(200, 203)]
    hinted_lines[2]["quality"] = "basic"
    hinted_file = client.files.create(file=open(write("hinted.jsonl", hinted_lines), "rb"), purpose="batch")
    hinted = client.batches.create(input_file_id=hinted_file.id, endpoint="/v1/chat/completions", completion_window="24h",
                                   metadata={"purser_quality": "premium", "purser_deadline": "hour"})
    hinted = wait_openai(client, hinted.id)
    assert hinted.status == "completed", hinted.status
    ok(f"routing hints batch {hinted.id}")

    # Cancel: a batch cancelled at once ends cancelled; a cancel of a completed batch is a 400, not retried.
    cancel_file = client.files.create(file=open(write("cancel.jsonl", [chat_line(n) for n in range(100, 140)]), "rb"), purpose="batch")
    doomed = client.batches.create(input_file_id=cancel_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    cancelling = client.batches.cancel(doomed.id)
    assert cancelling.status in ("cancelling", "cancelled"), cancelling.status
    ended = wait_openai(client, doomed.id)
    assert ended.status == "cancelled" and ended.cancelled_at, ended.status
    ok(f"batches.cancel -> {cancelling.status} -> cancelled ({ended.request_counts})")
    raw_cancel = httpx.post(f"{BASE}/v1/batches/{batch.id}/cancel", headers={"Authorization": f"Bearer {KEY_A}"})
    assert raw_cancel.status_code == 400 and raw_cancel.headers.get("x-should-retry") == "false"
    error = expect(openai.BadRequestError, lambda: client.batches.cancel(batch.id), "cancelling a completed batch")
    assert error.body["type"] == "invalid_request_error" and error.request_id

    # A bad file: the batch fails with the line at fault.
    bad = write("bad.jsonl", [chat_line(1), {"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": "no"}}])
    failed = client.batches.create(input_file_id=client.files.create(file=open(bad, "rb"), purpose="batch").id,
                                   endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait_openai(client, failed.id)
    assert failed.status == "failed" and failed.errors and failed.errors.data[0].line == 2, failed
    ok(f"a bad file fails: line {failed.errors.data[0].line}: {failed.errors.data[0].message[:60]}")

    # Errors the SDK raises.
    expect(openai.NotFoundError, lambda: client.batches.retrieve("batch_nope"), "an unknown batch")
    expect(openai.NotFoundError, lambda: client.files.retrieve("file-nope"), "an unknown file")
    expect(openai.AuthenticationError, lambda: openai.OpenAI(base_url=BASE + "/v1", api_key="pk_" + "0" * 48, max_retries=0).batches.list(), "an unknown key")
    expect(openai.BadRequestError, lambda: client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"), "an endpoint Purser does not serve")
    expect(openai.PermissionDeniedError, lambda: reader.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"), "a create with a read key")
    assert reader.batches.retrieve(batch.id).id == batch.id
    ok("a read key reads its project's batches")

    # Project B sees nothing of project A.
    expect(openai.NotFoundError, lambda: other.batches.retrieve(batch.id), "project B retrieving A's batch")
    expect(openai.NotFoundError, lambda: other.files.retrieve(uploaded.id), "project B retrieving A's file")
    expect(openai.NotFoundError, lambda: other.files.content(done.output_file_id), "project B downloading A's output")
    expect(openai.NotFoundError, lambda: other.batches.cancel(batch.id), "project B cancelling A's batch")
    assert list(other.batches.list()) == [] and list(other.files.list()) == []
    ok("project B lists no batch and no file of project A")

    deleted = client.files.delete(uploaded.id)
    FileDeleted.model_validate(deleted.model_dump())
    assert deleted.deleted and uploaded.id not in [file.id for file in client.files.list()]
    expect(openai.NotFoundError, lambda: client.files.retrieve(uploaded.id), "a deleted file")


def check_anthropic():
    client = anthropic.Anthropic(base_url=BASE, api_key=KEY_A, max_retries=2)
    other = anthropic.Anthropic(base_url=BASE, api_key=KEY_B, max_retries=0)
    requests = [{"custom_id": f"msg-{n}", "params": {"model": "claude-sonnet-4-5", "max_tokens": 80,
                                                      "messages": [{"role": "user", "content": f"Summarise item {n}."}]}} for n in range(1, 4)]
    raw = client.messages.batches.with_raw_response.create(requests=requests)
    assert raw.headers.get("request-id"), "every answer carries request-id"
    batch = MessageBatch.model_validate(json.loads(raw.http_response.text))
    assert batch.processing_status == "in_progress" and batch.results_url is None
    ok(f"messages.batches.create -> {batch.id}, a MessageBatch")
    assert client.messages.batches.create(requests=requests).id == batch.id
    ok("a retried create answers the same batch")
    while time.time() < DEADLINE:
        batch = client.messages.batches.retrieve(batch.id)
        if batch.processing_status == "ended":
            break
        time.sleep(0.2)
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 3, batch
    assert batch.results_url and batch.results_url.startswith(BASE + "/v1/messages/batches/"), batch.results_url
    ok(f"polled to ended: {batch.request_counts}")
    results = list(client.messages.batches.results(batch.id))
    assert sorted(result.custom_id for result in results) == ["msg-1", "msg-2", "msg-3"]
    assert all(result.result.type == "succeeded" for result in results)
    for result in results:
        anthropic_line(result.model_dump())
    ok("results: three MessageBatchIndividualResponse lines, all succeeded")

    second = client.messages.batches.create(requests=requests[:1])
    cancelled = client.messages.batches.cancel(second.id)
    assert cancelled.processing_status in ("canceling", "ended"), cancelled.processing_status
    ok(f"messages.batches.cancel -> {cancelled.processing_status}")
    page = client.messages.batches.list(limit=1)
    assert len(page.data) == 1 and page.has_more and page.data[0].id == second.id
    ids = [b.id for b in client.messages.batches.list(limit=1)]
    assert ids == [second.id, batch.id], ids
    ok("messages.batches.list pages newest first")

    expect(anthropic.NotFoundError, lambda: other.messages.batches.retrieve(batch.id), "project B retrieving A's message batch")
    expect(anthropic.NotFoundError, lambda: list(other.messages.batches.results(batch.id)), "project B reading A's results")
    assert list(other.messages.batches.list()) == []
    expect(anthropic.AuthenticationError, lambda: anthropic.Anthropic(base_url=BASE, api_key="wrong", max_retries=0).messages.batches.list(), "a wrong key")
    expect(anthropic.BadRequestError, lambda: client.messages.batches.create(requests=[]), "an empty create")
    deleted = client.messages.batches.delete(batch.id)
    DeletedMessageBatch.model_validate(deleted.model_dump())
    assert deleted.type == "message_batch_deleted"
    expect(anthropic.NotFoundError, lambda: client.messages.batches.retrieve(batch.id), "a deleted message batch")


check_openai()
check_anthropic()
print("all checks passed")
