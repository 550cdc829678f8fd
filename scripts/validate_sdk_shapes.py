"""Checks every line of a `purser results` file against the official SDKs' own types.

usage: validate_sdk_shapes.py openai|anthropic FILE

openai: each line is a batch output line, {id, custom_id, response, error}: a 2xx response's body validates as
openai.types.chat.ChatCompletion, another status's body as {"error": openai.types.ErrorObject}, and a line
without a response has one of the batch API's non-HTTP error codes. anthropic: each line validates as
anthropic.types.messages.MessageBatchIndividualResponse. Prints a count per kind of line; exits 1 on the first
line that does not validate, naming it.
"""
import collections
import json
import sys

from anthropic.types.messages import MessageBatchIndividualResponse
from openai.types import ErrorObject
from openai.types.chat import ChatCompletion

NON_HTTP_CODES = {"batch_expired", "batch_cancelled", "request_timeout"}


def openai_line(line):
    assert isinstance(line.get("id"), str) and isinstance(line.get("custom_id"), str), "id and custom_id must be strings"
    response, error = line.get("response"), line.get("error")
    if response is not None:
        assert error is None, "a line with a response has error null"
        assert isinstance(response["status_code"], int) and isinstance(response["request_id"], str)
        if 200 <= response["status_code"] < 300:
            completion = ChatCompletion.model_validate(response["body"])
            kind = "tool_calls" if completion.choices[0].message.tool_calls else "completion"
            return f"{response['status_code']} {kind}"
        ErrorObject.model_validate(response["body"]["error"])
        return f"{response['status_code']} error"
    assert error["code"] in NON_HTTP_CODES, f"error.code {error['code']!r} is not one of {sorted(NON_HTTP_CODES)}"
    assert isinstance(error["message"], str)
    return error["code"]


def anthropic_line(line):
    result = MessageBatchIndividualResponse.model_validate(line).result
    if result.type == "succeeded":
        return "succeeded tool_use" if any(block.type == "tool_use" for block in result.message.content) else "succeeded"
    if result.type == "errored":
        return f"errored {result.error.error.type}"
    return result.type


def main():
    kind, path = sys.argv[1], sys.argv[2]
    check = {"openai": openai_line, "anthropic": anthropic_line}[kind]
    counts = collections.Counter()
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            try:
                counts[check(json.loads(text))] += 1
            except Exception as error:  # noqa: BLE001 - any failure is reported with its line
                print(f"{path}:{number}: does not validate as {kind}: {error}\n{text[:400]}")
                return 1
    print(json.dumps(dict(sorted(counts.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
