"""`/playground`: try the models — chat (streamed, markdown with highlighted code, stop button), image
generation, speech (text or a web article, played paragraph by paragraph) and transcription.

Requests go to the gateway's own `/v1` API like any client's, so they are logged, limited and routed like any
other. They carry either a key pasted here or, by default, a temporary key the page creates for the signed-in
user through the admin API ("playground · <user>", expiring after a few hours). Its secret stays in the server
side of this tab's state and is never sent to the browser.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx

from ui_reflex.api_client import ApiError, GatewayClient, KeyDraft
from ui_reflex.layout import page_shell
from ui_reflex.session import admin_api
from ui_reflex.widgets import error_callout

SESSION_KEY_HOURS = 12
STREAM_FLUSH_SECONDS = 0.08
"""How often streamed text is pushed to the page (a push per token would flood the websocket)."""
IMAGE_SIZES = ["256x256", "512x512", "768x768", "1024x1024"]
MAX_IMAGES = 12
KEY_SESSION = "session"
KEY_PASTED = "pasted"


@dataclass(frozen=True)
class ChatMessage:
    role: str  # user | assistant
    content: str


@dataclass(frozen=True)
class ImageView:
    src: str
    prompt: str
    filename: str


@dataclass(frozen=True)
class Clip:
    index: int
    text: str
    src: str
    filename: str


class SequentialAudio(rx.el.Audio):
    """An <audio> element that tells the state when a clip has finished (to start the next one)."""

    on_ended: rx.EventHandler[rx.event.no_args_event_spec]


def session_key_name(username: str) -> str:
    return f"playground · {username or 'admin'}"


def data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def paragraphs_of(text: str) -> list[str]:
    """Paragraphs of pasted text: blocks separated by blank lines (single line breaks stay inside a paragraph)."""
    blocks = [" ".join(line.strip() for line in block.splitlines()).strip() for block in text.split("\n\n")]
    return [b for b in blocks if b]


class PlaygroundState(rx.State):
    tab: str = "chat"
    models: list[str] = []
    key_mode: str = KEY_SESSION
    pasted_key: str = ""
    load_error: str = ""
    # chat
    chat_model: str = ""
    system_prompt: str = ""
    max_tokens: str = "512"
    messages: list[ChatMessage] = []
    streaming: bool = False
    chat_stats: str = ""
    chat_error: str = ""
    # images
    image_model: str = ""
    image_size: str = "512x512"
    images: list[ImageView] = []
    image_busy: bool = False
    image_error: str = ""
    # speech
    speech_model: str = ""
    voices: list[str] = []
    voice: str = ""
    article_url: str = ""
    article_title: str = ""
    clips: list[Clip] = []
    playing: int = 0
    speech_busy: bool = False
    speech_status: str = ""
    speech_error: str = ""
    # transcription
    transcribe_model: str = ""
    transcript: str = ""
    transcribe_busy: bool = False
    transcribe_error: str = ""

    _stop: bool = False
    _speech_run: int = 0
    _session_secret: str = ""
    _session_expires: float = 0.0
    _upload: tuple[str, bytes, str] = ("", b"", "")

    @rx.event
    def load(self):
        self.load_error = ""
        return PlaygroundState.load_models

    @rx.event(background=True)
    async def load_models(self):
        """Every model the chosen key may name (`GET /v1/models` with that key: local, aliases and peers)."""
        try:
            async with await self._gateway() as gateway:
                models = sorted({m.id for m in await gateway.models()})
            error = ""
        except ApiError as exc:
            models, error = [], f"Could not list the models: {exc.explanation}"
        async with self:
            self.models, self.load_error = models, error
            for name in ("chat_model", "image_model", "speech_model", "transcribe_model"):
                if getattr(self, name) not in models:
                    setattr(self, name, models[0] if models else "")
            speech_model = self.speech_model
        if speech_model:
            await self._load_voices(speech_model)

    async def _load_voices(self, model: str) -> None:
        try:
            async with await self._gateway() as gateway:
                voices = await gateway.voices(model)
        except ApiError:
            voices = []
        async with self:
            if self.speech_model != model:
                return
            self.voices = voices
            if voices and self.voice not in voices:
                self.voice = voices[0]

    @rx.event
    def set_tab(self, value: str):
        self.tab = value

    @rx.event
    def set_key_mode(self, value: str):
        self.key_mode = value
        return PlaygroundState.load_models

    @rx.event
    def set_pasted_key(self, value: str):
        self.pasted_key = value.strip()
        return PlaygroundState.load_models

    @rx.event
    def set_chat_model(self, value: str):
        self.chat_model = value

    @rx.event
    def set_system_prompt(self, value: str):
        self.system_prompt = value

    @rx.event
    def set_max_tokens(self, value: str):
        self.max_tokens = value

    @rx.event
    def set_image_model(self, value: str):
        self.image_model = value

    @rx.event
    def set_image_size(self, value: str):
        self.image_size = value

    @rx.event(background=True)
    async def set_speech_model(self, value: str):
        async with self:
            self.speech_model, self.voices = value, []
        await self._load_voices(value)

    @rx.event
    def set_voice(self, value: str):
        self.voice = value

    @rx.event
    def set_transcribe_model(self, value: str):
        self.transcribe_model = value

    # ---- chat --------------------------------------------------------------

    @rx.event
    def clear_chat(self):
        if not self.streaming:
            self.messages, self.chat_stats, self.chat_error = [], "", ""

    @rx.event
    def stop(self):
        self._stop = True

    @rx.event(background=True)
    async def send(self, form: dict[str, Any]):
        text = str(form.get("message") or "").strip()
        async with self:
            if self.streaming or not text:
                return
            if not self.chat_model:
                self.chat_error = "Choose a model first."
                return
            self.streaming, self._stop, self.chat_error, self.chat_stats = True, False, "", ""
            history = [{"role": m.role, "content": m.content} for m in self.messages]
            if self.system_prompt.strip():
                history.insert(0, {"role": "system", "content": self.system_prompt.strip()})
            history.append({"role": "user", "content": text})
            self.messages = [*self.messages, ChatMessage("user", text), ChatMessage("assistant", "")]
            model = self.chat_model
            try:
                max_tokens = max(1, int(self.max_tokens))
            except ValueError:
                max_tokens = 512
        reply, tokens, speed, first_at = "", None, None, None
        started = time.monotonic()
        last_push = started
        stopped = False
        try:
            async with await self._gateway() as gateway:
                async for chunk in gateway.chat_stream(model, history, max_tokens=max_tokens):
                    if chunk.text and first_at is None:
                        first_at = time.monotonic()
                    reply += chunk.text
                    tokens = chunk.completion_tokens or tokens
                    speed = chunk.tokens_per_second or speed
                    now = time.monotonic()
                    if now - last_push >= STREAM_FLUSH_SECONDS:
                        last_push = now
                        async with self:
                            self._show_reply(reply)
                            if self._stop:
                                stopped = True
                                break
            error = ""
        except ApiError as exc:
            error = exc.explanation
        async with self:
            self._show_reply(reply)
            self.streaming = False
            if error:
                self.chat_error = f"The model answered with an error: {error}"
            parts = ["stopped" if stopped else "done"]
            if first_at is not None:
                parts.append(f"first token after {(first_at - started) * 1000:.0f} ms")
            if tokens:
                parts.append(f"{tokens} tokens")
            if speed:
                parts.append(f"{speed:.1f} tok/s")
            self.chat_stats = " · ".join(parts)

    def _show_reply(self, reply: str) -> None:
        if self.messages and self.messages[-1].role == "assistant":
            self.messages = [*self.messages[:-1], ChatMessage("assistant", reply)]

    # ---- images ------------------------------------------------------------

    @rx.event(background=True)
    async def generate(self, form: dict[str, Any]):
        prompt = str(form.get("prompt") or "").strip()
        async with self:
            if self.image_busy or not prompt:
                return
            self.image_busy, self.image_error = True, ""
            model, size = self.image_model, self.image_size
        try:
            async with await self._gateway() as gateway:
                made = await gateway.generate_images(model, prompt, size=size)
            error = "" if made else "The model returned no image."
        except ApiError as exc:
            made, error = [], exc.explanation
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        async with self:
            new = [
                ImageView(
                    src=image.url or f"data:{image.media_type};base64,{image.b64}",
                    prompt=prompt,
                    filename=f"switchyard-{stamp}-{i + 1}.{image.media_type.split('/')[-1]}",
                )
                for i, image in enumerate(made)
            ]
            self.images = [*new, *self.images][:MAX_IMAGES]
            self.image_busy, self.image_error = False, error

    # ---- speech ------------------------------------------------------------

    @rx.event
    def set_article_url(self, value: str):
        self.article_url = value

    @rx.event
    def advance(self):
        """The current clip ended: play the next one (it starts by itself once it has been synthesized)."""
        self.playing += 1

    @rx.event
    def stop_speech(self):
        self._speech_run += 1
        self.speech_busy, self.speech_status = False, "Stopped."

    @rx.event(background=True)
    async def speak(self, form: dict[str, Any]):
        text = str(form.get("speech_text") or "").strip()
        url = str(form.get("article_url") or "").strip()
        async with self:
            if not self.speech_model:
                self.speech_error = "Choose a speech model first."
                return
            self._speech_run += 1
            run = self._speech_run
            self.speech_busy, self.speech_error, self.clips, self.playing = True, "", [], 0
            self.article_title = ""
            self.speech_status = "Fetching the article…" if url else "Synthesizing…"
            model, voice = self.speech_model, self.voice
        try:
            if url:
                async with admin_api(self) as api:
                    article = await api.article(url)
                paragraphs = article.paragraphs
                async with self:
                    self.article_title = article.title
            else:
                paragraphs = paragraphs_of(text)
            if not paragraphs:
                raise ApiError(0, "there is no text to read" if not url else "no readable text was found there")
            async with await self._gateway() as gateway:
                for index, paragraph in enumerate(paragraphs):
                    async with self:
                        if self._speech_run != run:
                            return
                        self.speech_status = f"Synthesizing paragraph {index + 1} of {len(paragraphs)}…"
                    audio = await gateway.speech(model, paragraph, voice=voice)
                    extension = audio.media_type.split("/")[-1].replace("mpeg", "mp3")
                    clip = Clip(
                        index, paragraph, data_url(audio.data, audio.media_type), f"speech-{index + 1:02d}.{extension}"
                    )
                    async with self:
                        if self._speech_run != run:
                            return
                        self.clips = [*self.clips, clip]
            async with self:
                if self._speech_run == run:
                    self.speech_status = f"{len(paragraphs)} paragraphs ready."
        except ApiError as exc:
            async with self:
                if self._speech_run == run:
                    self.speech_error = exc.explanation
                    self.speech_status = ""
        finally:
            async with self:
                if self._speech_run == run:
                    self.speech_busy = False

    @rx.var
    def current_clip(self) -> str:
        return self.clips[self.playing].src if 0 <= self.playing < len(self.clips) else ""

    # ---- transcription -----------------------------------------------------

    @rx.event
    async def transcribe(self, files: list[rx.UploadFile]):
        """Receive the upload (upload handlers cannot run in the background), then transcribe in the background."""
        self.transcribe_error, self.transcript = "", ""
        if not files:
            self.transcribe_error = "Choose an audio file first."
            return None
        if not self.transcribe_model:
            self.transcribe_error = "Choose a transcription model first."
            return None
        upload = files[0]
        self._upload = (upload.name or "audio", await upload.read(), upload.content_type or "")
        self.transcribe_busy = True
        return PlaygroundState.run_transcription

    @rx.event(background=True)
    async def run_transcription(self):
        async with self:
            (filename, data, media_type), self._upload = self._upload, ("", b"", "")
            model = self.transcribe_model
        transcript, error = "", ""
        try:
            async with await self._gateway() as gateway:
                transcript = await gateway.transcribe(model, filename, data, media_type)
        except ApiError as exc:
            error = exc.explanation
        async with self:
            self.transcript, self.transcribe_error, self.transcribe_busy = transcript, error, False

    # ---- the key -----------------------------------------------------------

    async def _gateway(self) -> GatewayClient:
        """A gateway client with the pasted key, or this tab's temporary session key (created when needed).

        Called from background events: state is read and written under the state lock, the API calls that
        create a key run outside it.
        """
        async with self:
            mode, pasted = self.key_mode, self.pasted_key
            secret, expires = self._session_secret, self._session_expires
        if mode == KEY_PASTED:
            if not pasted:
                raise ApiError(0, "paste an API key, or use the temporary key of your sign-in")
            return GatewayClient(pasted)
        if not secret or expires - time.time() < 300:
            secret, expires = await self._new_session_key()
            async with self:
                self._session_secret, self._session_expires = secret, expires
        return GatewayClient(secret)

    async def _new_session_key(self) -> tuple[str, float]:
        async with admin_api(self) as api:
            try:
                username = (await api.whoami()).username
            except ApiError:
                username = ""
            name = session_key_name(username)
            stale = [
                k for k in await api.list_keys() if k.name == name and k.state != "active" and k.source == "database"
            ]
            # keys of earlier tabs that have expired: tidy them away
            await asyncio.gather(*(api.delete_key(k.id) for k in stale), return_exceptions=True)
            expires = datetime.now(UTC) + timedelta(hours=SESSION_KEY_HOURS)
            created = await api.create_key(KeyDraft(name=name, expires_at=expires))
        return created.secret, expires.timestamp()


# --------------------------------------------------------------------------- components


def _model_select(value: rx.Var[str], on_change: Any, element_id: str) -> rx.Component:
    return rx.select(PlaygroundState.models, value=value, on_change=on_change, aria_label="Model", id=element_id)


def _key_picker() -> rx.Component:
    s = PlaygroundState
    return rx.hstack(
        rx.select.root(
            rx.select.trigger(aria_label="Key", id="playground-key-mode"),
            rx.select.content(
                rx.select.item("Temporary key of my sign-in", value=KEY_SESSION),
                rx.select.item("Paste an API key", value=KEY_PASTED),
            ),
            value=s.key_mode,
            on_change=s.set_key_mode,
        ),
        rx.cond(
            s.key_mode == KEY_PASTED,
            rx.input(
                type="password",
                placeholder="sy-… (then press Tab)",
                default_value=s.pasted_key,
                on_blur=s.set_pasted_key,
                id="playground-key",
                width="220px",
            ),
        ),
        spacing="2",
        align="center",
        wrap="wrap",
    )


def _no_image(*children: Any, **props: Any) -> rx.Component:
    """Model output is untrusted: an image in it would make the browser fetch any URL the text names."""
    return rx.text("[image not shown]", as_="span", size="1", color=rx.color("gray", 10))


def _bubble(message: rx.Var[ChatMessage]) -> rx.Component:
    mine = message.role == "user"
    return rx.box(
        rx.cond(
            mine,
            rx.text(message.content, white_space="pre-wrap", size="2"),
            rx.cond(
                message.content != "",
                rx.markdown(
                    message.content, use_raw=False, use_math=False, use_katex=False, component_map={"img": _no_image}
                ),
                rx.spinner(size="2"),
            ),
        ),
        align_self=rx.cond(mine, "flex-end", "flex-start"),
        max_width=rx.cond(mine, "85%", "100%"),
        background=rx.cond(mine, rx.color("accent", 4), rx.color("gray", 2)),
        border=rx.cond(mine, "none", f"1px solid {rx.color('gray', 5)}"),
        padding="8px 12px",
        border_radius="10px",
        overflow_x="auto",
        min_width="0",
        data_role=message.role,
    )


def _chat() -> rx.Component:
    s = PlaygroundState
    return rx.vstack(
        rx.flex(
            _model_select(s.chat_model, s.set_chat_model, "chat-model"),
            rx.input(
                value=s.max_tokens,
                on_change=s.set_max_tokens,
                type="number",
                min=1,
                width="110px",
                aria_label="Max tokens",
                title="max tokens",
            ),
            rx.button("Clear", variant="soft", color_scheme="gray", on_click=s.clear_chat, disabled=s.streaming),
            spacing="2",
            wrap="wrap",
            align="center",
        ),
        rx.text_area(
            value=s.system_prompt,
            on_change=s.set_system_prompt,
            placeholder="System prompt (optional)",
            rows="2",
            width="100%",
        ),
        rx.vstack(
            rx.foreach(s.messages, _bubble),
            rx.cond(
                s.messages.length() == 0, rx.text("Say something to the model.", size="2", color=rx.color("gray", 10))
            ),
            spacing="2",
            width="100%",
            min_height="200px",
            id="chat-log",
        ),
        error_callout(s.chat_error),
        rx.text(s.chat_stats, size="1", color=rx.color("gray", 10), id="chat-stats"),
        rx.form(
            rx.hstack(
                rx.input(name="message", placeholder="Message", id="chat-input", flex="1", auto_complete="off"),
                rx.cond(
                    s.streaming,
                    rx.button(
                        rx.icon("square", size=14),
                        "Stop",
                        type="button",
                        color_scheme="red",
                        variant="soft",
                        on_click=s.stop,
                        id="chat-stop",
                    ),
                    rx.button(rx.icon("send", size=14), "Send", type="submit", id="chat-send"),
                ),
                width="100%",
                spacing="2",
            ),
            on_submit=s.send,
            reset_on_submit=True,
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def _images() -> rx.Component:
    s = PlaygroundState
    return rx.vstack(
        rx.form(
            rx.vstack(
                rx.flex(
                    _model_select(s.image_model, s.set_image_model, "image-model"),
                    rx.select(
                        IMAGE_SIZES, value=s.image_size, on_change=s.set_image_size, aria_label="Size", id="image-size"
                    ),
                    spacing="2",
                    wrap="wrap",
                ),
                rx.text_area(
                    name="prompt", placeholder="Describe the image", rows="3", width="100%", id="image-prompt"
                ),
                rx.button(rx.icon("image", size=14), "Generate", type="submit", loading=s.image_busy),
                spacing="2",
                width="100%",
            ),
            on_submit=s.generate,
            reset_on_submit=False,
            width="100%",
        ),
        error_callout(s.image_error),
        rx.grid(
            rx.foreach(
                s.images,
                lambda img: rx.card(
                    rx.vstack(
                        rx.image(
                            src=img.src, alt=img.prompt, width="100%", border_radius="6px", class_name="generated"
                        ),
                        rx.text(img.prompt, size="1", color=rx.color("gray", 10), trim="both"),
                        rx.el.a(
                            rx.button(rx.icon("download", size=14), "Download", size="1", variant="soft"),
                            href=img.src,
                            download=img.filename,
                        ),
                        spacing="2",
                    ),
                ),
            ),
            columns=rx.breakpoints(initial="1", sm="2", lg="3"),
            spacing="3",
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def _speech() -> rx.Component:
    s = PlaygroundState
    return rx.vstack(
        rx.flex(
            rx.select(
                s.models,
                value=s.speech_model,
                on_change=s.set_speech_model,
                aria_label="Speech model",
                id="speech-model",
            ),
            rx.cond(
                s.voices.length() > 0,
                rx.select(s.voices, value=s.voice, on_change=s.set_voice, aria_label="Voice", id="speech-voice"),
                rx.input(value=s.voice, on_change=s.set_voice, placeholder="voice (optional)", width="160px"),
            ),
            spacing="2",
            wrap="wrap",
        ),
        rx.form(
            rx.vstack(
                rx.input(
                    name="article_url", placeholder="https://… an article to read aloud", width="100%", id="article-url"
                ),
                rx.text("or paste text (paragraphs separated by blank lines)", size="1", color=rx.color("gray", 10)),
                rx.text_area(name="speech_text", rows="4", width="100%", id="speech-text"),
                rx.hstack(
                    rx.button(rx.icon("volume-2", size=14), "Speak", type="submit", loading=s.speech_busy),
                    rx.button("Stop", type="button", variant="soft", color_scheme="gray", on_click=s.stop_speech),
                    spacing="2",
                ),
                spacing="2",
                width="100%",
            ),
            on_submit=s.speak,
            reset_on_submit=False,
            width="100%",
        ),
        error_callout(s.speech_error),
        rx.text(s.speech_status, size="2", color=rx.color("gray", 11)),
        rx.cond(s.article_title != "", rx.heading(s.article_title, size="3")),
        SequentialAudio.create(
            id="speech-player",
            src=s.current_clip,
            controls=True,
            auto_play=True,
            on_ended=s.advance,
            style={"width": "100%"},
        ),
        rx.vstack(
            rx.foreach(
                s.clips,
                lambda c: rx.hstack(
                    rx.badge(c.index + 1, variant=rx.cond(c.index == s.playing, "solid", "soft")),
                    rx.text(c.text, size="2", flex="1", min_width="0"),
                    rx.el.a(rx.icon("download", size=14), href=c.src, download=c.filename, title="Download"),
                    width="100%",
                    align="start",
                    spacing="2",
                    data_clip=c.index,
                ),
            ),
            spacing="2",
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def _transcription() -> rx.Component:
    s = PlaygroundState
    return rx.vstack(
        rx.select(
            s.models,
            value=s.transcribe_model,
            on_change=s.set_transcribe_model,
            aria_label="Model",
            id="transcribe-model",
        ),
        rx.upload(
            rx.vstack(
                rx.icon("file-audio", size=24),
                rx.text("Drop an audio file here or click to choose one", size="2"),
                align="center",
            ),
            id="audio-file",
            max_files=1,
            accept={"audio/*": [".wav", ".mp3", ".m4a", ".ogg", ".flac", ".webm"]},
            border=f"1px dashed {rx.color('gray', 7)}",
            padding="20px",
            width="100%",
            border_radius="8px",
        ),
        rx.text(rx.selected_files("audio-file").join(", "), size="1", color=rx.color("gray", 10)),
        rx.button(
            rx.icon("captions", size=14),
            "Transcribe",
            loading=s.transcribe_busy,
            on_click=s.transcribe(rx.upload_files(upload_id="audio-file")),
        ),
        error_callout(s.transcribe_error),
        rx.cond(
            s.transcript != "",
            rx.card(rx.text(s.transcript, white_space="pre-wrap", size="2"), width="100%", id="transcript"),
        ),
        spacing="3",
        width="100%",
    )


def playground_page() -> rx.Component:
    s = PlaygroundState
    return page_shell(
        "Playground",
        error_callout(s.load_error),
        _key_picker(),
        rx.tabs.root(
            rx.tabs.list(
                rx.tabs.trigger("Chat", value="chat"),
                rx.tabs.trigger("Images", value="images"),
                rx.tabs.trigger("Speech", value="speech"),
                rx.tabs.trigger("Transcription", value="transcription"),
            ),
            rx.tabs.content(rx.box(_chat(), padding_top="16px"), value="chat"),
            rx.tabs.content(rx.box(_images(), padding_top="16px"), value="images"),
            rx.tabs.content(rx.box(_speech(), padding_top="16px"), value="speech"),
            rx.tabs.content(rx.box(_transcription(), padding_top="16px"), value="transcription"),
            value=s.tab,
            on_change=s.set_tab,
            width="100%",
        ),
    )
