"""Ollama API ↔ OpenAI translation, checked against the official `ollama` client's own response types.

The SSE and JSON fixtures under ``fixtures/llama_server`` were recorded from the real llama-server
(``/work/shared/llama/llama-server -m tiny.gguf -c 2048``, build 0c1e570). Tool-call streams are written
by hand in llama-server's format, because the tiny random model never produces a tool call.
"""

from __future__ import annotations

import base64
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import ollama
import pytest
from ollama._types import (
    ChatResponse,
    EmbeddingsResponse,
    EmbedResponse,
    GenerateResponse,
    ListResponse,
    ProcessResponse,
    ShowResponse,
)

from core.ollama import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    EMBEDDINGS_PATH,
    OllamaModel,
    OllamaRequestError,
    OllamaStreamTranslator,
    UpstreamCall,
    error_from_upstream,
    load_response,
    parse_keep_alive,
    ps_response,
    show_response,
    strip_latest_tag,
    tags_response,
    translate_chat_request,
    translate_embed_request,
    translate_embeddings_request,
    translate_generate_request,
    translate_response,
    version_response,
)

FIXTURES = Path(__file__).parent / "fixtures" / "llama_server"
FIXED_NOW = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
PNG_1PX = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201c3a1d5d40000000049454e44ae426082"
    )
).decode()
JPEG_HEAD = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20).decode()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict:
    return json.loads(fixture_bytes(name))


def sse(*events: dict | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


class FakeClock:
    """perf_counter stand-in: each reading advances 10 ms."""

    def __init__(self, start: float = 100.0, step: float = 0.01):
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def translate_stream(kind, data: bytes, chunks: list[int] | None = None, *, load_seconds: float = 0.0) -> list[dict]:
    translator = OllamaStreamTranslator(
        kind, "tiny", started_at=100.0, load_seconds=load_seconds, clock=FakeClock(), wall_clock=lambda: FIXED_NOW
    )
    out = b""
    position = 0
    for size in chunks or [len(data)]:
        out += translator.feed(data[position : position + size])
        position += size
    out += translator.feed(data[position:])
    out += translator.finish()
    assert out.endswith(b"\n")
    return [json.loads(line) for line in out.splitlines()]


def random_chunking(length: int, rng: random.Random) -> list[int]:
    sizes = []
    while sum(sizes) < length:
        sizes.append(rng.choice([1, 1, 2, 3, 7, 13, 64, 200, 1000]))
    return sizes


# =============================================================== requests


class TestChatRequest:
    def test_streams_by_default_and_asks_for_usage(self):
        call = translate_chat_request({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
        assert call.path == CHAT_PATH
        assert call.stream is True
        assert call.body == {
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def test_stream_false_sends_no_stream_options(self):
        call = translate_chat_request(
            {"model": "tiny", "stream": False, "messages": [{"role": "user", "content": "x"}]}
        )
        assert call.stream is False
        assert call.body["stream"] is False
        assert "stream_options" not in call.body

    def test_options_become_sampling_parameters(self):
        options = {
            "num_ctx": 8192,
            "num_predict": 64,
            "temperature": 0.2,
            "top_k": 20,
            "top_p": 0.9,
            "min_p": 0.05,
            "stop": ["</s>", "\n\n"],
            "seed": 42,
            "repeat_penalty": 1.1,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "num_keep": 4,
            "num_gpu": 99,
            "num_thread": 8,
        }
        call = translate_chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "options": options}
        )
        sent = {k: v for k, v in call.body.items() if k not in ("model", "messages", "stream", "stream_options")}
        assert sent == {
            "max_tokens": 64,
            "temperature": 0.2,
            "top_k": 20,
            "top_p": 0.9,
            "min_p": 0.05,
            "stop": ["</s>", "\n\n"],
            "seed": 42,
            "repeat_penalty": 1.1,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "n_keep": 4,
        }
        assert call.num_ctx == 8192  # recorded for the gateway, never sent: the context is fixed at start
        assert set(call.unapplied_options) == {"num_gpu", "num_thread"}

    @pytest.mark.parametrize("num_predict", [-1, -2])
    def test_unlimited_num_predict_sends_no_max_tokens(self, num_predict):
        call = translate_chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": num_predict}}
        )
        assert "max_tokens" not in call.body

    def test_single_stop_string_becomes_a_list_and_null_options_are_skipped(self):
        call = translate_chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "options": {"stop": "END", "seed": None}}
        )
        assert call.body["stop"] == ["END"]
        assert "seed" not in call.body

    @pytest.mark.parametrize(
        "options", [{"temperature": "hot"}, {"top_k": 1.5}, {"num_ctx": 0}, {"stop": [1]}, {"seed": True}, "fast"]
    )
    def test_malformed_options_are_refused(self, options):
        with pytest.raises(OllamaRequestError):
            translate_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "options": options})

    def test_format_json_and_json_schema(self):
        messages = [{"role": "user", "content": "x"}]
        as_json = translate_chat_request({"model": "m", "messages": messages, "format": "json"})
        assert as_json.body["response_format"] == {"type": "json_object"}
        schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
        as_schema = translate_chat_request({"model": "m", "messages": messages, "format": schema})
        assert as_schema.body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema, "strict": True},
        }
        assert "response_format" not in translate_chat_request({"model": "m", "messages": messages, "format": ""}).body
        with pytest.raises(OllamaRequestError):
            translate_chat_request({"model": "m", "messages": messages, "format": "yaml"})

    def test_images_become_image_url_parts_with_the_sniffed_type(self):
        call = translate_chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "what is this?", "images": [PNG_1PX, JPEG_HEAD]}]}
        )
        assert call.body["messages"][0]["content"] == [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG_HEAD}"}},
            {"type": "text", "text": "what is this?"},
        ]

    def test_images_must_be_base64_strings(self):
        with pytest.raises(OllamaRequestError):
            translate_chat_request({"model": "m", "messages": [{"role": "user", "content": "x", "images": [1]}]})
        with pytest.raises(OllamaRequestError, match="base64"):
            translate_chat_request({"model": "m", "messages": [{"role": "user", "content": "x", "images": ["%%%%"]}]})

    def test_tools_pass_through_and_tool_history_is_converted(self):
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        messages = [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "thinking": "two cities",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "get_time", "arguments": {"tz": "CET"}}},
                ],
            },
            {"role": "tool", "tool_name": "get_time", "content": "12:00"},
            {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
        ]
        call = translate_chat_request({"model": "m", "messages": messages, "tools": tools})
        assert call.body["tools"] == tools
        assistant, time_answer, weather_answer = call.body["messages"][1:]
        assert assistant["reasoning_content"] == "two cities"
        assert assistant["tool_calls"] == [
            {
                "id": "call_1_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {"id": "call_1_1", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}},
        ]
        assert time_answer == {"role": "tool", "content": "12:00", "tool_call_id": "call_1_1"}
        assert weather_answer == {"role": "tool", "content": "sunny", "tool_call_id": "call_1_0"}

    def test_think_switches_the_chat_template(self):
        messages = [{"role": "user", "content": "x"}]
        off = translate_chat_request({"model": "m", "messages": messages, "think": False})
        assert off.body["chat_template_kwargs"] == {"enable_thinking": False}
        high = translate_chat_request({"model": "m", "messages": messages, "think": "high"})
        assert high.body["chat_template_kwargs"] == {"enable_thinking": True}
        assert high.body["reasoning_effort"] == "high"

    def test_empty_messages_only_load_the_model(self):
        call = translate_chat_request({"model": "m", "messages": []})
        assert call.load_only and not call.unloads
        unload = translate_chat_request({"model": "m", "messages": [], "keep_alive": 0})
        assert unload.load_only and unload.unloads
        loaded = ChatResponse.model_validate(load_response(call))
        assert (loaded.done, loaded.done_reason, loaded.message.content) == (True, "load", "")
        assert ChatResponse.model_validate(load_response(unload, unloaded=True)).done_reason == "unload"

    @pytest.mark.parametrize(
        "body",
        [
            {"messages": [{"role": "user", "content": "x"}]},
            {"model": "  ", "messages": []},
            {"model": "m", "messages": "hello"},
            {"model": "m", "messages": [{"content": "no role"}]},
            {"model": "m", "messages": [{"role": "user", "content": ["parts"]}]},
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "keep_alive": "soon"},
        ],
    )
    def test_invalid_bodies_are_refused_with_a_reason(self, body):
        with pytest.raises(OllamaRequestError) as info:
            translate_chat_request(body)
        assert str(info.value)


class TestKeepAlive:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            (None, None),
            ("", None),
            (0, 0.0),
            ("0", 0.0),
            ("0s", 0.0),
            (30, 30.0),
            (2.5, 2.5),
            ("300", 300.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("10s", 10.0),
            (-1, math.inf),
            ("-1", math.inf),
            ("-1m", math.inf),
        ],
    )
    def test_parses_numbers_and_go_durations(self, value, seconds):
        assert parse_keep_alive(value) == seconds

    @pytest.mark.parametrize("value", ["soon", "5 minutes", "m", "5x", True, [5], "1h-5m"])
    def test_rejects_what_ollama_rejects(self, value):
        with pytest.raises(OllamaRequestError):
            parse_keep_alive(value)


class TestGenerateRequest:
    def test_prompt_and_system_become_chat_messages(self):
        call = translate_generate_request(
            {"model": "m", "prompt": "Why is the sky blue?", "system": "Be brief.", "template": "{{ .Prompt }}"}
        )
        assert call.path == CHAT_PATH
        assert call.body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why is the sky blue?"},
        ]
        assert call.stream is True
        assert "template" in call.unapplied_options

    def test_raw_uses_plain_completions_without_the_system_prompt(self):
        call = translate_generate_request(
            {"model": "m", "prompt": "[INST] hi [/INST]", "raw": True, "system": "ignored", "stream": False}
        )
        assert call.path == COMPLETIONS_PATH
        assert call.body == {"model": "m", "stream": False, "prompt": "[INST] hi [/INST]"}

    def test_images_join_the_user_message(self):
        call = translate_generate_request({"model": "m", "prompt": "describe", "images": [PNG_1PX]})
        assert call.body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
        with pytest.raises(OllamaRequestError):
            translate_generate_request({"model": "m", "prompt": "describe", "images": [PNG_1PX], "raw": True})

    def test_empty_prompt_loads_or_unloads(self):
        call = translate_generate_request({"model": "m", "keep_alive": "0"})
        assert call.load_only and call.unloads
        response = GenerateResponse.model_validate(load_response(call, unloaded=True))
        assert (response.response, response.done, response.done_reason) == ("", True, "unload")

    def test_options_format_and_keep_alive(self):
        call = translate_generate_request(
            {
                "model": "m",
                "prompt": "x",
                "format": "json",
                "keep_alive": "10m",
                "options": {"num_predict": 8, "num_ctx": 1024},
            }
        )
        assert call.body["response_format"] == {"type": "json_object"}
        assert call.body["max_tokens"] == 8
        assert (call.keep_alive, call.num_ctx) == (600.0, 1024)


class TestEmbedRequests:
    def test_embed_takes_a_string_or_a_list(self):
        one = translate_embed_request({"model": "e", "input": "hello"})
        assert (one.path, one.stream, one.body) == (
            EMBEDDINGS_PATH,
            False,
            {"model": "e", "input": "hello", "encoding_format": "float"},
        )
        many = translate_embed_request({"model": "e", "input": ["a", "b"], "dimensions": 16})
        assert many.body["input"] == ["a", "b"]
        assert many.dimensions == 16
        with pytest.raises(OllamaRequestError):
            translate_embed_request({"model": "e", "input": [1, 2]})
        with pytest.raises(OllamaRequestError):
            translate_embed_request({"model": "e", "input": "x", "dimensions": 0})

    def test_legacy_embeddings_takes_a_prompt(self):
        call = translate_embeddings_request({"model": "e", "prompt": "hello"})
        assert call.body == {"model": "e", "input": "hello", "encoding_format": "float"}
        assert translate_embeddings_request({"model": "e"}).load_only

    def test_empty_input_loads_the_model(self):
        call = translate_embed_request({"model": "e", "input": []})
        assert call.load_only
        assert EmbedResponse.model_validate(load_response(call)).embeddings == []


def test_latest_tag_is_optional():
    assert strip_latest_tag("qwen2.5:latest") == "qwen2.5"
    assert strip_latest_tag("qwen2.5:7b") == "qwen2.5:7b"


# ========================================================== whole responses


def chat_call(stream: bool = False) -> UpstreamCall:
    return translate_chat_request({"model": "tiny", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})


class TestNonStreamedResponses:
    def test_recorded_chat_completion(self):
        upstream = fixture_json("chat.json")
        body = translate_response(chat_call(), upstream, started_at=10.0, load_seconds=0.5, finished_at=11.25)
        response = ChatResponse.model_validate(body)
        assert response.model == "tiny"
        assert response.message.role == "assistant"
        assert response.message.content == upstream["choices"][0]["message"]["content"]
        assert response.done is True
        assert response.done_reason == "length"
        assert response.eval_count == upstream["usage"]["completion_tokens"] == 5
        assert response.prompt_eval_count == upstream["usage"]["prompt_tokens"] == 25
        assert response.total_duration == 1_250_000_000
        assert response.load_duration == 500_000_000
        assert response.prompt_eval_duration == round(upstream["timings"]["prompt_ms"] * 1e6)
        assert response.eval_duration == round(upstream["timings"]["predicted_ms"] * 1e6)
        assert datetime.fromisoformat(response.created_at).tzinfo is not None

    def test_recorded_raw_generate_uses_completion_text(self):
        upstream = fixture_json("completion.json")
        call = translate_generate_request({"model": "tiny", "prompt": "hello", "raw": True, "stream": False})
        response = GenerateResponse.model_validate(translate_response(call, upstream, started_at=0.0, finished_at=1.0))
        assert response.response == upstream["choices"][0]["text"]
        assert (response.eval_count, response.prompt_eval_count, response.done_reason) == (4, 7, "length")

    def test_generate_through_chat_reports_thinking(self):
        upstream = {
            "choices": [
                {"finish_reason": "stop", "message": {"role": "assistant", "content": "42", "reasoning_content": "hmm"}}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
        call = translate_generate_request({"model": "tiny", "prompt": "answer?", "stream": False})
        response = GenerateResponse.model_validate(translate_response(call, upstream, started_at=0.0, finished_at=2.0))
        assert (response.response, response.thinking, response.done_reason) == ("42", "hmm", "stop")
        # no llama.cpp timings: the time after loading counts as evaluation
        assert (response.prompt_eval_duration, response.eval_duration) == (0, 2_000_000_000)

    def test_tool_call_arguments_become_objects(self):
        upstream = {
            "choices": [
                {
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'},
                            }
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12},
        }
        body = translate_response(chat_call(), upstream, started_at=0, finished_at=1)
        response = ChatResponse.model_validate(body)
        assert response.message.content == ""
        assert response.message.tool_calls[0].function.name == "get_weather"
        assert response.message.tool_calls[0].function.arguments == {"city": "Paris", "days": 2}
        assert body["message"]["tool_calls"][0]["id"] == "c1"
        assert response.done_reason == "stop"  # Ollama has no "tool_calls" done reason

    def test_logprobs_are_carried_over(self):
        upstream = {
            "choices": [
                {
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Hi"},
                    "logprobs": {
                        "content": [
                            {"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}
                        ]
                    },
                }
            ]
        }
        response = ChatResponse.model_validate(translate_response(chat_call(), upstream, started_at=0, finished_at=1))
        assert response.logprobs[0].token == "Hi"
        assert response.logprobs[0].top_logprobs[0].logprob == -0.1

    def test_recorded_embeddings_are_normalised_and_truncated(self):
        upstream = fixture_json("embeddings.json")
        call = translate_embed_request({"model": "tiny", "input": ["hello", "world"]})
        response = EmbedResponse.model_validate(translate_response(call, upstream, started_at=0, finished_at=0.5))
        assert len(response.embeddings) == 2
        assert len(response.embeddings[0]) == 64
        assert response.embeddings[0] == pytest.approx(upstream["data"][0]["embedding"], rel=1e-6)
        assert response.prompt_eval_count == upstream["usage"]["prompt_tokens"]
        assert response.total_duration == 500_000_000

        short = translate_embed_request({"model": "tiny", "input": ["hello", "world"], "dimensions": 8})
        truncated = EmbedResponse.model_validate(translate_response(short, upstream, started_at=0, finished_at=1))
        assert [len(v) for v in truncated.embeddings] == [8, 8]
        assert math.fsum(x * x for x in truncated.embeddings[0]) == pytest.approx(1.0)

    def test_embeddings_come_back_in_input_order(self):
        upstream = {"data": [{"index": 1, "embedding": [0.0, 2.0]}, {"index": 0, "embedding": [3.0, 0.0]}]}
        call = translate_embed_request({"model": "e", "input": ["a", "b"]})
        body = translate_response(call, upstream, started_at=0, finished_at=0)
        assert body["embeddings"] == [[1.0, 0.0], [0.0, 1.0]]

    def test_legacy_embeddings_response(self):
        upstream = fixture_json("embeddings.json")
        call = translate_embeddings_request({"model": "tiny", "prompt": "hello"})
        response = EmbeddingsResponse.model_validate(translate_response(call, upstream, started_at=0, finished_at=0))
        assert list(response.embedding) == upstream["data"][0]["embedding"]

    @pytest.mark.parametrize(
        ("status", "body", "message"),
        [
            (400, b'{"error":{"code":400,"message":"Expected \'messages\' to be an array"}}', "Expected 'messages'"),
            (503, b'{"error":"Loading model"}', "Loading model"),
            (502, b"Bad Gateway", "Bad Gateway"),
            (500, b"", "upstream returned HTTP 500"),
        ],
    )
    def test_upstream_errors_become_ollama_errors(self, status, body, message):
        error = error_from_upstream(status, body)
        assert set(error) == {"error"}
        assert message in error["error"]


# ================================================================ streaming


def sse_content(data: bytes, field: str = "content") -> str:
    text = ""
    for line in data.splitlines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get(field) if field == "content" else choice.get("text")
                text += piece or ""
    return text


class TestStreamTranslator:
    def test_recorded_chat_stream(self):
        data = fixture_bytes("chat_stream_24.sse")
        lines = translate_stream("chat", data)
        parsed = [ChatResponse.model_validate(line) for line in lines]
        *fragments, final = parsed
        assert all(not p.done for p in fragments)
        assert "".join(p.message.content for p in fragments) == sse_content(data)
        assert len(fragments) == 24
        assert final.done and final.done_reason == "length"
        assert final.message.content == ""
        assert final.eval_count == 24
        usage_event = json.loads(data.split(b"data: ")[-2])
        assert final.prompt_eval_count == usage_event["usage"]["prompt_tokens"]
        assert final.prompt_eval_duration == round(usage_event["timings"]["prompt_ms"] * 1e6)
        assert final.eval_duration == round(usage_event["timings"]["predicted_ms"] * 1e6)
        assert final.total_duration > 0
        assert all(p.created_at == "2025-01-02T03:04:05.678901Z" for p in parsed)

    def test_any_chunking_gives_the_same_ndjson(self):
        data = fixture_bytes("chat_stream_24.sse")
        whole = translate_stream("chat", data)
        rng = random.Random(8)
        for _ in range(40):
            assert translate_stream("chat", data, random_chunking(len(data), rng)) == whole
        assert translate_stream("chat", data, [1] * len(data)) == whole

    def test_recorded_completion_stream_as_generate(self):
        data = fixture_bytes("completion_stream.sse")
        rng = random.Random(3)
        lines = translate_stream("generate", data, random_chunking(len(data), rng))
        parsed = [GenerateResponse.model_validate(line) for line in lines]
        assert "".join(p.response for p in parsed) == sse_content(data, "text")
        final = parsed[-1]
        assert (final.done, final.done_reason, final.eval_count, final.prompt_eval_count) == (True, "length", 4, 7)
        assert sum(1 for p in parsed if p.done) == 1

    def test_tool_call_fragments_arrive_as_one_call_with_object_arguments(self):
        base = {"object": "chat.completion.chunk", "id": "x", "model": "tiny"}
        data = sse(
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_abc",
                                    "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""},
                                }
                            ]
                        },
                    }
                ],
            },
            *[
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}}],
                }
                for p in ['{"ci', 'ty": "Pa', 'ris", "unit"', ': "°C"}']
            ],
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 1, "id": "call_def", "function": {"name": "get_time", "arguments": "{}"}}
                            ]
                        },
                    }
                ],
            },
            {**base, "choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {}}]},
            {**base, "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 18}},
            "[DONE]",
        )
        rng = random.Random(5)
        for chunks in (None, random_chunking(len(data), rng), [1] * len(data)):
            lines = translate_stream("chat", data, chunks)
            parsed = [ChatResponse.model_validate(line) for line in lines]
            assert len(parsed) == 2
            calls = parsed[0].message.tool_calls
            assert [(c.function.name, c.function.arguments) for c in calls] == [
                ("get_weather", {"city": "Paris", "unit": "°C"}),
                ("get_time", {}),
            ]
            assert [c["id"] for c in lines[0]["message"]["tool_calls"]] == ["call_abc", "call_def"]
            assert parsed[1].done and parsed[1].done_reason == "stop"
            assert (parsed[1].eval_count, parsed[1].prompt_eval_count) == (18, 40)

    def test_multibyte_characters_split_across_chunks(self):
        text = ["héllo ", "wörld ", "🌍", " ✓"]
        data = sse(
            *[{"choices": [{"index": 0, "delta": {"content": t}}]} for t in text],
            {"choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]},
            "[DONE]",
        )
        lines = translate_stream("chat", data, [1] * len(data))
        assert "".join(line["message"]["content"] for line in lines) == "".join(text)
        assert lines[-1]["done_reason"] == "stop"

    def test_reasoning_becomes_thinking(self):
        data = sse(
            {"choices": [{"index": 0, "delta": {"reasoning_content": "let me think"}}]},
            {"choices": [{"index": 0, "delta": {"content": "42"}}]},
            {"choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]},
            "[DONE]",
        )
        chat = [ChatResponse.model_validate(line) for line in translate_stream("chat", data)]
        assert (chat[0].message.thinking, chat[0].message.content) == ("let me think", "")
        assert chat[1].message.content == "42"
        generate = [GenerateResponse.model_validate(line) for line in translate_stream("generate", data)]
        assert (generate[0].thinking, generate[1].response) == ("let me think", "42")

    def test_measured_durations_without_llama_cpp_timings(self):
        data = sse(
            {"choices": [{"index": 0, "delta": {"content": "a"}}]},
            {"choices": [{"index": 0, "delta": {"content": "b"}}]},
            {"choices": [{"index": 0, "delta": {"content": "c"}}]},
            {"choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]},
            "[DONE]",
        )
        final = translate_stream("chat", data, load_seconds=0.005)[-1]
        # FakeClock (started_at=100.0): the tokens read 100.01, .02 and .03; the end reads .04
        assert final["eval_count"] == 3  # counted content events
        assert final["prompt_eval_duration"] == 5_000_000  # 10 ms to the first token, minus 5 ms of loading
        assert final["eval_duration"] == 20_000_000
        assert final["total_duration"] == 40_000_000
        assert final["load_duration"] == 5_000_000

    def test_upstream_error_event_ends_the_stream_with_an_error_line(self):
        data = sse(
            {"choices": [{"index": 0, "delta": {"content": "partial"}}]},
            {"error": {"code": 500, "message": "context shift disabled", "type": "server_error"}},
            {"choices": [{"index": 0, "delta": {"content": "ignored"}}]},
        )
        lines = translate_stream("chat", data)
        assert lines[-1] == {"error": "context shift disabled"}
        assert len(lines) == 2

    def test_a_cut_stream_ends_with_an_error_and_a_finished_one_without_done_still_closes(self):
        cut = sse({"choices": [{"index": 0, "delta": {"content": "half"}}]})
        lines = translate_stream("chat", cut[:-1])  # not even the blank line after the last event
        assert lines[0]["message"]["content"] == "half"
        assert "error" in lines[-1] and "before the response was complete" in lines[-1]["error"]

        no_done = sse(
            {"choices": [{"index": 0, "delta": {"content": "ok"}}]},
            {"choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]},
        )
        assert translate_stream("chat", no_done)[-1]["done"] is True

    def test_nothing_follows_the_final_line(self):
        translator = OllamaStreamTranslator("chat", "tiny", wall_clock=lambda: FIXED_NOW)
        data = fixture_bytes("chat_stream.sse")
        out = translator.feed(data)
        assert out.count(b'"done":true') == 1
        assert translator.done
        assert translator.feed(data) == b""
        assert translator.finish() == b""
        assert translator.fail("late") == b""

    def test_gateway_abort_produces_an_error_line(self):
        translator = OllamaStreamTranslator("generate", "tiny")
        translator.feed(sse({"choices": [{"index": 0, "text": "a"}]}))
        assert json.loads(translator.fail("upstream timed out")) == {"error": "upstream timed out"}


# ============================================ the official client end to end


class FakeGateway:
    """What the lead's route will do, minus the network: translate, ask a recorded upstream, translate back."""

    def __init__(self):
        self.upstream_bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        path = request.url.path
        if path == "/api/chat":
            call = translate_chat_request(body)
        elif path == "/api/generate":
            call = translate_generate_request(body)
        elif path == "/api/embed":
            call = translate_embed_request(body)
        else:
            return httpx.Response(404, json={"error": "not here"})
        self.upstream_bodies.append(call.body)
        if call.path == EMBEDDINGS_PATH:
            return httpx.Response(
                200, json=translate_response(call, fixture_json("embeddings.json"), started_at=0, finished_at=1)
            )
        if call.stream:
            name = "chat_stream_24.sse" if call.path == CHAT_PATH else "completion_stream.sse"
            translator = OllamaStreamTranslator(call.kind, call.model)  # type: ignore[arg-type]
            data = fixture_bytes(name)
            out = b"".join(translator.feed(data[i : i + 97]) for i in range(0, len(data), 97)) + translator.finish()
            return httpx.Response(200, content=out, headers={"content-type": "application/x-ndjson"})
        name = "chat.json" if call.path == CHAT_PATH else "completion.json"
        return httpx.Response(200, json=translate_response(call, fixture_json(name), started_at=0, finished_at=1))


class TestOfficialClient:
    @pytest.fixture
    def gateway(self):
        return FakeGateway()

    @pytest.fixture
    def client(self, gateway):
        return ollama.Client(host="http://switchyard.test", transport=httpx.MockTransport(gateway))

    def test_chat_stream_and_not(self, client, gateway):
        parts = list(client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True))
        assert parts[-1].done and parts[-1].eval_count == 24
        assert len("".join(p.message.content for p in parts)) > 0
        reply = client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 5})
        assert reply.done_reason == "length" and reply.eval_count == 5
        assert gateway.upstream_bodies[-1]["max_tokens"] == 5

    def test_generate_raw_stream(self, client, gateway):
        parts = list(client.generate(model="tiny", prompt="hello", raw=True, stream=True))
        assert parts[-1].done and parts[-1].eval_count == 4
        assert gateway.upstream_bodies[-1]["prompt"] == "hello"

    def test_embed(self, client):
        response = client.embed(model="tiny", input=["hello", "world"])
        assert len(response.embeddings) == 2

    def test_streamed_errors_raise_in_the_client(self):
        def failing(request: httpx.Request) -> httpx.Response:
            translator = OllamaStreamTranslator("chat", "tiny")
            out = translator.feed(sse({"error": {"message": "out of memory"}}))
            return httpx.Response(200, content=out)

        client = ollama.Client(host="http://switchyard.test", transport=httpx.MockTransport(failing))
        with pytest.raises(ollama.ResponseError, match="out of memory"):
            list(client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True))


# ================================================================= listings


def described(**overrides) -> OllamaModel:
    values = {
        "name": "qwen2.5-7b-instruct-q4_k_m",
        "size": 4_683_087_520,
        "modified_at": 1_700_000_000.0,
        "family": "qwen2",
        "parameter_count": 7_615_616_512,
        "quantization": "Q4_K_M",
        "context_length": 8192,
        "trained_context_length": 32768,
        "block_count": 28,
        "embedding_length": 3584,
        "capabilities": ("completion", "tools"),
        "template": "{{ .Messages }}",
        "parameters": {"stop": ["<|im_end|>"]},
    }
    values.update(overrides)
    return OllamaModel(**values)


class TestListings:
    def test_tags(self):
        body = tags_response([described(), described(name="a-first", size=10)])
        listing = ListResponse.model_validate(body)
        assert [m.model for m in listing.models] == ["a-first", "qwen2.5-7b-instruct-q4_k_m"]
        model = listing.models[1]
        assert model.size == 4_683_087_520
        assert model.modified_at == datetime.fromtimestamp(1_700_000_000, UTC)
        assert model.details.family == "qwen2"
        assert model.details.parameter_size == "7.6B"
        assert model.details.quantization_level == "Q4_K_M"
        assert len(model.digest) == 64
        assert body["models"][1]["name"] == model.model

    def test_show_reports_the_effective_context(self):
        show = ShowResponse.model_validate(show_response(described()))
        assert show.modelinfo["qwen2.context_length"] == 8192
        assert show.modelinfo["switchyard.trained_context_length"] == 32768
        assert show.modelinfo["general.parameter_count"] == 7_615_616_512
        assert show.modelinfo["qwen2.block_count"] == 28
        assert "num_ctx" in show.parameters and "8192" in show.parameters
        assert '"<|im_end|>"' in show.parameters
        assert show.capabilities == ["completion", "tools"]
        assert show.template == "{{ .Messages }}"
        assert show.details.format == "gguf"
        assert "PARAMETER num_ctx" in show.modelfile

    def test_ps_reports_context_and_expiry(self):
        now = 1_750_000_000.0
        body = ps_response([described(expires_at=now + 300), described(name="forever", size_vram=123)], now=now)
        ps = ProcessResponse.model_validate(body)
        forever, qwen = ps.models
        assert qwen.context_length == 8192
        assert qwen.expires_at == datetime.fromtimestamp(now + 300, UTC)
        assert qwen.size_vram == qwen.size
        assert forever.size_vram == 123
        assert forever.expires_at.year - datetime.fromtimestamp(now, UTC).year >= 290

    def test_version(self):
        assert version_response()["version"].count(".") == 2
        assert version_response("0.5.0") == {"version": "0.5.0"}

    def test_parameter_size_prefers_the_files_label(self):
        assert described(parameter_size="7B").details()["parameter_size"] == "7B"
        assert described(parameter_count=494_032_768).details()["parameter_size"] == "494.03M"
        assert described(parameter_count=None).details()["parameter_size"] == ""
