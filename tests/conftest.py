"""Shared fixtures: the real llama-server and a tiny GGUF generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import llama_server_bin, make_tiny_gguf


@pytest.fixture(scope="session")
def llama_bin() -> str:
    return llama_server_bin()


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")
