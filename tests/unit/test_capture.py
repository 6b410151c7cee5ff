"""Captures are bounded, hold no credentials, keep binary bodies out and survive storage."""

from __future__ import annotations

import json
import zlib

import pytest

from core.capture import (
    DEFAULT_CAPTURE_BYTES,
    REDACTED,
    CaptureBuffer,
    body_kind,
    build_capture,
    compress,
    decompress,
    redact_headers,
    redact_text,
)

CHAT_REQUEST = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()


# ---------------------------------------------------------------- the buffer


def test_small_body_is_kept_whole():
    buffer = CaptureBuffer(1024, "application/json")
    buffer.append(CHAT_REQUEST)
    assert buffer.data == CHAT_REQUEST
    assert buffer.size == len(CHAT_REQUEST)
    assert not buffer.truncated
    assert buffer.to_dict() == {
        "content_type": "application/json",
        "size": len(CHAT_REQUEST),
        "truncated": False,
        "text": CHAT_REQUEST.decode(),
    }


def test_body_beyond_the_cap_is_cut_and_marked_but_fully_counted():
    buffer = CaptureBuffer(10, "text/event-stream")
    for chunk in (b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"):
        buffer.append(chunk)
    assert buffer.data == b"data: 1\n\nd"
    assert buffer.size == 27
    assert buffer.truncated
    record = buffer.to_dict()
    assert (record["truncated"], record["size"], record["text"]) == (True, 27, "data: 1\n\nd")


def test_cap_exactly_reached_is_not_truncation():
    buffer = CaptureBuffer(4, "text/plain")
    buffer.append(b"ab")
    buffer.append(b"cd")
    assert (buffer.data, buffer.truncated) == (b"abcd", False)


def test_zero_cap_keeps_only_metadata():
    buffer = CaptureBuffer(0, "application/json")
    buffer.append(CHAT_REQUEST)
    assert buffer.to_dict()["text"] == ""
    assert buffer.truncated


def test_default_cap_is_small():
    assert CaptureBuffer().limit_bytes == DEFAULT_CAPTURE_BYTES <= 64 * 1024


def test_a_multibyte_character_cut_by_the_cap_is_left_out():
    text = "héllo wörld".encode()
    buffer = CaptureBuffer(2, "text/plain; charset=utf-8")  # "h" and the first byte of "é"
    buffer.append(text)
    assert buffer.to_dict()["text"] == "h"


@pytest.mark.parametrize(
    ("content_type", "encoding", "kind"),
    [
        ("application/json", None, "text"),
        ("application/json; charset=utf-8", None, "text"),
        ("text/event-stream", None, "text"),
        ("application/vnd.api+json", None, "text"),
        ("application/x-www-form-urlencoded", None, "text"),
        ("multipart/form-data; boundary=abc", None, "multipart"),
        ("audio/mpeg", None, "binary"),
        ("image/png", None, "binary"),
        ("application/octet-stream", None, "binary"),
        ("application/json", "gzip", "encoded"),
        ("application/json", "identity", "text"),
        (None, None, None),
    ],
)
def test_body_kinds(content_type, encoding, kind):
    assert body_kind(content_type, encoding) == kind


@pytest.mark.parametrize(
    ("content_type", "encoding", "omitted"),
    [
        ("multipart/form-data; boundary=xyz", None, "multipart"),
        ("audio/wav", None, "binary"),
        ("image/png", None, "binary"),
        ("application/json", "br", "encoded"),
    ],
)
def test_binary_multipart_and_encoded_bodies_are_metadata_only(content_type, encoding, omitted):
    chunks = [b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\n\x00\x01\x02RIFF', b"\xff" * 5000]
    buffer = CaptureBuffer(1024, content_type, encoding)
    for chunk in chunks:
        buffer.append(chunk)
    assert buffer.data == b""  # nothing was copied
    assert buffer.to_dict() == {
        "content_type": content_type,
        "size": sum(map(len, chunks)),
        "omitted": omitted,
        "content_encoding": encoding,
    }


def test_body_without_content_type_is_text_only_if_it_decodes():
    text = CaptureBuffer(100)
    text.append(b"hello")
    assert text.to_dict()["text"] == "hello"
    binary = CaptureBuffer(100)
    binary.append(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert binary.to_dict()["omitted"] == "binary"


def test_invalid_utf8_in_a_text_body_is_replaced_not_fatal():
    buffer = CaptureBuffer(100, "text/plain")
    buffer.append(b"ok \xff ok")
    assert buffer.to_dict()["text"] == "ok \ufffd ok"


# ---------------------------------------------------------------- redaction


def test_credential_headers_are_redacted_and_others_kept_in_order():
    headers = [
        (b"host", b"gateway:3000"),
        (b"authorization", b"Bearer sk-live-123"),
        (b"x-api-key", b"sk-ant-456"),
        (b"cookie", b"session=abc"),
        (b"proxy-authorization", b"Basic dXNlcjpwYXNz"),
        (b"x-goog-api-key", b"AIza789"),
        (b"x-session-token", b"tok"),
        (b"x-client-secret", b"shh"),
        (b"content-type", b"application/json"),
        (b"anthropic-ratelimit-input-tokens-remaining", b"39000"),
        (b"x-ratelimit-remaining-tokens", b"149984"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    redacted = redact_headers(headers)
    assert redacted == [
        ["host", "gateway:3000"],
        ["authorization", REDACTED],
        ["x-api-key", REDACTED],
        ["cookie", REDACTED],
        ["proxy-authorization", REDACTED],
        ["x-goog-api-key", REDACTED],
        ["x-session-token", REDACTED],
        ["x-client-secret", REDACTED],
        ["content-type", "application/json"],
        ["anthropic-ratelimit-input-tokens-remaining", "39000"],  # counts tokens, holds none
        ["x-ratelimit-remaining-tokens", "149984"],
        ["set-cookie", REDACTED],
        ["set-cookie", REDACTED],
    ]


def test_header_names_are_matched_case_insensitively_from_a_mapping():
    assert redact_headers({"Authorization": "Bearer x", "X-API-Key": "y", "Accept": "*/*"}) == [
        ["Authorization", REDACTED],
        ["X-API-Key", REDACTED],
        ["Accept", "*/*"],
    ]


def test_redact_values_are_replaced_in_header_values_and_text():
    secret = "sk-injected-credential-0123456789"
    assert redact_headers([("x-forwarded-info", f"via {secret}")], [secret]) == [
        ["x-forwarded-info", f"via {REDACTED}"]
    ]
    assert redact_text(f'{{"api_key": "{secret}", "again": "{secret}"}}', [secret]) == (
        f'{{"api_key": "{REDACTED}", "again": "{REDACTED}"}}'
    )


def test_a_secret_containing_another_is_replaced_whole():
    assert redact_text("key=abcdef123456", ["abc", "abcdef123456"]) == f"key={REDACTED}"


def test_empty_redact_values_change_nothing():
    assert redact_text("hello", ["", None]) == "hello"  # type: ignore[list-item]


def test_a_secret_cut_by_the_cap_is_still_redacted():
    secret = "sk-injected-credential-0123456789"
    body = f'{{"model": "m", "key": "{secret}"}}'.encode()
    cut_at = body.index(b"credential")  # the cap falls inside the secret
    buffer = CaptureBuffer(cut_at, "application/json")
    buffer.append(body)
    text = buffer.to_dict([secret])["text"]
    assert "sk-injected" not in text
    assert text.endswith(REDACTED)


# ---------------------------------------------------------------- the capture and storage


def test_capture_round_trips_through_compression():
    request = CaptureBuffer(4096, "application/json")
    request.append(CHAT_REQUEST)
    response = CaptureBuffer(4096, "text/event-stream")
    response.append(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
    capture = build_capture(
        request_headers=[(b"authorization", b"Bearer sk-client"), (b"content-type", b"application/json")],
        request_body=request,
        response_headers={"content-type": "text/event-stream", "x-request-id": "req_1"},
        response_body=response,
    )
    blob = compress(capture)
    assert isinstance(blob, bytes)
    assert b"sk-client" not in zlib.decompress(blob)
    restored = decompress(blob)
    assert restored == capture
    assert restored["version"] == 1
    assert restored["request"]["headers"][0] == ["authorization", REDACTED]
    assert restored["request"]["body"]["text"] == CHAT_REQUEST.decode()
    assert restored["response"]["body"]["truncated"] is False


def test_capture_without_bodies():
    capture = build_capture(request_headers=[("accept", "*/*")])
    assert capture["request"]["body"] is None and capture["response"]["body"] is None
    assert decompress(compress(capture)) == capture


def test_compression_shrinks_repetitive_captures():
    buffer = CaptureBuffer(64 * 1024, "text/event-stream")
    for _ in range(500):
        buffer.append(b'data: {"choices":[{"delta":{"content":"token"}}],"object":"chat.completion.chunk"}\n\n')
    capture = build_capture(response_body=buffer)
    assert len(compress(capture)) < len(json.dumps(capture)) / 10


@pytest.mark.parametrize("blob", [b"", b"plain bytes", zlib.compress(b"not json"), zlib.compress(b"[1, 2]")])
def test_decompress_refuses_what_is_not_a_capture(blob):
    with pytest.raises(ValueError):
        decompress(blob)


def test_decompress_refuses_a_truncated_blob():
    blob = compress(build_capture(request_headers=[("a", "b" * 1000)]))
    with pytest.raises(ValueError):
        decompress(blob[: len(blob) // 2])


def test_decompress_bounds_the_output():
    blob = zlib.compress(b'{"a": "' + b"x" * 1_000_000 + b'"}')
    with pytest.raises(ValueError, match="larger than"):
        decompress(blob, max_bytes=100_000)
