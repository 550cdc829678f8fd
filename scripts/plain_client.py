"""A plain client for purser-bench's comparison (issue 21): `calls` chat completions POSTed to a local server, `in_flight`
at a time over kept-alive HTTP/1.1 connections, with nothing but Python's asyncio streams. Prints one JSON line: the wall
seconds, the process's CPU seconds, the answers read and the errors.

    python3 scripts/plain_client.py PORT CALLS IN_FLIGHT
"""
import asyncio
import json
import resource
import sys
import time


async def worker(port, queue, counts):
    reader = writer = None
    while True:
        try:
            index = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        body = json.dumps({"model": "small", "max_tokens": 20,
                           "messages": [{"role": "user", "content": f"Question {index}"}]}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer bench\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + body)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length, close = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            json.loads(await reader.readexactly(length))
            counts["answers" if status == 200 else "errors"] += 1
            if close:
                writer.close()
                reader = writer = None
        except Exception:
            counts["errors"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def main(port, calls, in_flight):
    queue = asyncio.Queue()
    for index in range(calls):
        queue.put_nowait(index)
    counts = {"answers": 0, "errors": 0}
    await asyncio.gather(*(worker(port, queue, counts) for _ in range(in_flight)))
    return counts


if __name__ == "__main__":
    port, calls, in_flight = (int(value) for value in sys.argv[1:4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    counts = asyncio.run(main(port, calls, in_flight))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": time.monotonic() - started, "cpu_seconds": usage.ru_utime + usage.ru_stime, **counts}))
