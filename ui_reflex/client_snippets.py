"""Ready-to-paste client configurations for the Endpoints page, generated from the server's URL and a model.

Each snippet reads the key from ``SWITCHYARD_API_KEY`` (or says where to paste it) so nothing secret is
ever rendered into the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

KEY_ENV = "SWITCHYARD_API_KEY"


@dataclass(frozen=True)
class SnippetKind:
    key: str
    title: str
    language: str  # a react-syntax-highlighter language name
    where: str  # where the snippet goes


SNIPPET_KINDS: tuple[SnippetKind, ...] = (
    SnippetKind("curl", "curl", "bash", "a shell"),
    SnippetKind("python", "Python (OpenAI SDK)", "python", "pip install openai"),
    SnippetKind("typescript", "TypeScript (OpenAI SDK)", "typescript", "npm install openai"),
    SnippetKind("claude_code", "Claude Code", "json", "~/.claude/settings.json (Anthropic Messages API)"),
    SnippetKind("opencode", "opencode", "json", "opencode.json in your project or ~/.config/opencode/"),
    SnippetKind("open_webui", "Open WebUI", "bash", "docker; inside a container use an address it can reach"),
    SnippetKind("continue", "Continue", "yaml", "~/.continue/config.yaml"),
    SnippetKind("home_assistant", "Home Assistant", "yaml", "Extended OpenAI Conversation integration (HACS)"),
)


def client_snippets(origin: str, model: str) -> dict[str, str]:
    """Snippet text by kind key, for a server reachable at `origin` (scheme://host:port) and a model id."""
    origin = origin.rstrip("/")
    base = f"{origin}/v1"
    model = model or "MODEL"
    hello = [{"role": "user", "content": "Hello!"}]
    return {
        "curl": (
            f"curl {base}/chat/completions \\\n"
            f'  -H "Authorization: Bearer ${KEY_ENV}" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            f"  -d '{json.dumps({'model': model, 'messages': hello})}'"
        ),
        "python": (
            "import os\n\nfrom openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{base}", api_key=os.environ["{KEY_ENV}"])\n'
            "reply = client.chat.completions.create(\n"
            f'    model="{model}",\n'
            '    messages=[{"role": "user", "content": "Hello!"}],\n'
            ")\n"
            "print(reply.choices[0].message.content)"
        ),
        "typescript": (
            'import OpenAI from "openai";\n\n'
            f'const client = new OpenAI({{ baseURL: "{base}", apiKey: process.env.{KEY_ENV} }});\n'
            "const reply = await client.chat.completions.create({\n"
            f'  model: "{model}",\n'
            '  messages: [{ role: "user", content: "Hello!" }],\n'
            "});\n"
            "console.log(reply.choices[0].message.content);"
        ),
        "claude_code": json.dumps(
            {
                "env": {
                    "ANTHROPIC_BASE_URL": origin,
                    "ANTHROPIC_AUTH_TOKEN": "<your Switchyard key>",
                    "ANTHROPIC_MODEL": model,
                    "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
                }
            },
            indent=2,
        ),
        "opencode": json.dumps(
            {
                "$schema": "https://opencode.ai/config.json",
                "provider": {
                    "switchyard": {
                        "npm": "@ai-sdk/openai-compatible",
                        "name": "Switchyard",
                        "options": {"baseURL": base, "apiKey": f"{{env:{KEY_ENV}}}"},
                        "models": {model: {"name": model}},
                    }
                },
                "model": f"switchyard/{model}",
            },
            indent=2,
        ),
        "open_webui": (
            "docker run -d -p 8080:8080 \\\n"
            f"  -e OPENAI_API_BASE_URL={base} \\\n"
            f"  -e OPENAI_API_KEY=${KEY_ENV} \\\n"
            "  -v open-webui:/app/backend/data --name open-webui \\\n"
            "  ghcr.io/open-webui/open-webui:main"
        ),
        "continue": (
            "name: Switchyard\nversion: 0.0.1\nschema: v1\nmodels:\n"
            f"  - name: {model}\n"
            "    provider: openai\n"
            f"    model: {model}\n"
            f"    apiBase: {base}\n"
            f"    apiKey: ${{{{ secrets.{KEY_ENV} }}}}\n"
            "    roles: [chat, edit, apply]"
        ),
        "home_assistant": (
            "# Settings → Devices & services → Add integration → Extended OpenAI Conversation\n"
            f"base_url: {base}\n"
            "api_key: <your Switchyard key>\n"
            "# then Configure → options:\n"
            f"chat_model: {model}"
        ),
    }
