"""The service benchmark's SDK side: uploads FILE through the official openai SDK, creates a batch of it, and polls
until the batch has left `validating` (its lines checked and stored as a job, as `purser submit` does).

usage: bench_service_upload.py BASE_URL KEY FILE

Prints {"upload_seconds", "create_seconds", "validated_seconds", "status", "total"} as JSON.
"""
import json
import sys
import time

import openai

BASE, KEY, FILE = sys.argv[1:4]
client = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, timeout=600)
started = time.monotonic()
uploaded = client.files.create(file=open(FILE, "rb"), purpose="batch")
uploaded_at = time.monotonic()
batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
created_at = time.monotonic()
while batch.status == "validating":
    time.sleep(0.02)
    batch = client.batches.retrieve(batch.id)
validated_at = time.monotonic()
print(json.dumps({
    "upload_seconds": uploaded_at - started, "create_seconds": created_at - uploaded_at, "validated_seconds": validated_at - started,
    "status": batch.status, "total": batch.request_counts.total if batch.request_counts else 0, "id": batch.id,
}))
