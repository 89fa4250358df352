"""The HTTP side of ``rlhf-desk serve``: OpenAI's API as chat clients speak it.

    GET  /v1/models              the one model served
    POST /v1/chat/completions    a conversation's next assistant turn, streamed or not
    POST /v1/completions         a text continued as it is, streamed or not

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the status
a client expects: 400 for a body that is not JSON or a field out of range, 401 for a missing or
wrong API key (when one is set), 404 for an unknown model, 413 for a body over the size limit,
503 when too many requests wait. The handlers only parse and wait: generation runs on the
engine's thread (``engine.py``), so waiting requests never block the event loop, and a client
that disconnects mid-stream stops its generation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from desktop_app.core.config import SamplingConfig
from desktop_app.ml.generation.sampling import PromptInput, plain_transcript
from desktop_app.serve.engine import Engine, EngineBusy, PromptTooLong
from desktop_app.serve.engine import Request as Generation

MAX_BODY = 1 << 20          # bytes; a chat request is a few KB
MAX_MESSAGES = 1000
DISCONNECT_POLL_S = 0.5     # how often a waiting request checks that its client is still there
ROLES = ("system", "user", "assistant")
Collect = Callable[[list[dict]], None]


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code)

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind,
                                       "param": self.param, "code": self.code}},
                            status_code=self.status)


def create_api(engine: Engine, *, api_key: str | None = None, max_body: int = MAX_BODY,
               collect: Collect | None = None) -> FastAPI:
    """The app uvicorn serves. ``api_key``: required as ``Authorization: Bearer KEY`` on every
    request when set. ``collect(messages)``: called with each chat request's conversation."""
    api = FastAPI(title="RLHF Desk", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.requests = 0

    @api.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return ApiError(exc.status_code, str(exc.detail), kind).response()

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return ApiError(400, "The request is not valid.").response()

    api.add_middleware(_Guard, api_key=api_key, max_body=max_body)

    @api.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(engine)]}

    @api.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        _check_model(engine, model_id)
        return _model_card(engine)

    @api.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _json_body(request, max_body)
        _check_model(engine, body.get("model"))
        messages = _messages(body.get("messages"))
        sampling, seed, stops = _sampling(body)
        prompt = PromptInput(0, plain_transcript(messages), messages)
        await _check_length(engine, prompt, sampling)
        if collect is not None:
            await asyncio.get_running_loop().run_in_executor(None, collect, messages)
        api.state.requests += 1
        return await _respond(request, engine, prompt, sampling, seed, stops, body, chat=True)

    @api.post("/v1/completions")
    async def completions(request: Request):
        body = await _json_body(request, max_body)
        _check_model(engine, body.get("model"))
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "'prompt' must be a string (one prompt per request).",
                           param="prompt")
        sampling, seed, stops = _sampling(body)
        await _check_length(engine, prompt, sampling)
        api.state.requests += 1
        return await _respond(request, engine, prompt, sampling, seed, stops, body, chat=False)

    return api


# ---- checking a request ---------------------------------------------------------------------

class _Guard:
    """The API key and the declared body size, before any route runs. A plain ASGI middleware
    (not ``@app.middleware``, whose wrapping hides a client's disconnect from the route)."""

    def __init__(self, app, api_key: str | None, max_body: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        refusal = None
        if self.api_key is not None and not _key_matches(headers.get("authorization", ""),
                                                         self.api_key):
            refusal = ApiError(401, "Missing or wrong API key: send it as 'Authorization: "
                                    "Bearer KEY'.", "authentication_error",
                               code="invalid_api_key")
        length = headers.get("content-length")
        if refusal is None and length is not None and (not length.isdigit()
                                                        or int(length) > self.max_body):
            refusal = _too_large(self.max_body)
        if refusal is not None:
            return await refusal.response()(scope, receive, send)
        return await self.app(scope, receive, send)


def _key_matches(given: str, key: str) -> bool:
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(),
                                                                 key.encode())


def _too_large(max_body: int) -> ApiError:
    return ApiError(413, f"The request body is larger than {max_body} bytes.",
                    code="request_too_large")


async def _json_body(request: Request, max_body: int) -> dict:
    received = bytearray()
    async for chunk in request.stream():  # a chunked body has no Content-Length to check
        received += chunk
        if len(received) > max_body:
            raise _too_large(max_body)
    try:
        body = json.loads(received)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _model_card(engine: Engine) -> dict:
    return {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "rlhf-desk"}


async def _check_length(engine: Engine, prompt, sampling: SamplingConfig) -> None:
    """Tokenised off the event loop (a prompt may be a megabyte)."""
    try:
        await asyncio.get_running_loop().run_in_executor(None, engine.check_length, prompt,
                                                         sampling)
    except PromptTooLong as exc:
        raise ApiError(400, str(exc), param="messages",
                       code="context_length_exceeded") from None


def _check_model(engine: Engine, model: Any) -> None:
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required: the id /v1/models lists.", param="model")
    if model != engine.model_id:
        raise ApiError(404, f"The model {model!r} does not exist; this server has "
                            f"{engine.model_id!r}.", "not_found_error", param="model",
                       code="model_not_found")


def _messages(value: Any) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "'messages' must be a non-empty list.", param="messages")
    if len(value) > MAX_MESSAGES:
        raise ApiError(400, f"At most {MAX_MESSAGES} messages.", param="messages")
    messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(400, f"messages[{i}] must have a role of {', '.join(ROLES)}.",
                           param=f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, list):  # content parts: the text ones, joined
            content = "".join(p.get("text", "") for p in content
                              if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be text.",
                           param=f"messages[{i}].content")
        messages.append({"role": m["role"], "content": content})
    if messages[-1]["role"] == "assistant":
        raise ApiError(400, "The last message must be the user's (or a system message).",
                       param="messages")
    return messages


def _number(body: dict, name: str, default, lo, hi, kind=float):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not float(value).is_integer()) or not lo <= value <= hi:
        raise ApiError(400, f"'{name}' must be a {'whole ' if kind is int else ''}number "
                            f"from {lo} to {hi}.", param=name)
    return kind(value)


def _sampling(body: dict) -> tuple[SamplingConfig, int, list[str]]:
    if body.get("n") not in (None, 1):
        raise ApiError(400, "Only n = 1 is supported.", param="n")
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": tokens}, "max_tokens", 256, 1, 4096, int)
    temperature = _number(body, "temperature", 1.0, 0, 2)
    top_p = _number(body, "top_p", 1.0, 0, 1)
    seed = _number(body, "seed", None, 0, 2**63 - 1, int)
    stops = body.get("stop")
    stops = [stops] if isinstance(stops, str) else (stops or [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) \
            or len(stops) > 4:
        raise ApiError(400, "'stop' must be a string or up to 4 strings.", param="stop")
    greedy = temperature < 0.05  # temperature 0 means the most likely token each time
    sampling = SamplingConfig(temperature=1.0 if greedy else temperature,
                              top_p=max(top_p, 0.05), top_k=1 if greedy else 0,
                              max_new_tokens=max_tokens)
    return sampling, seed if seed is not None else secrets.randbelow(2**31), stops


# ---- answering -----------------------------------------------------------------------------

async def _respond(request: Request, engine: Engine, prompt, sampling: SamplingConfig,
                   seed: int, stops: list[str], body: dict, chat: bool):
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    cut = _StopStrings(stops)

    def on_text(delta: str) -> None:
        delta = cut.feed(delta)
        if delta:
            loop.call_soon_threadsafe(events.put_nowait, ("text", delta))
        if cut.hit:
            generation.stop.stop()

    def done(result) -> None:
        rest = cut.flush()  # text held back as a possible stop string that never came
        if rest:
            loop.call_soon_threadsafe(events.put_nowait, ("text", rest))
        loop.call_soon_threadsafe(events.put_nowait, ("done", result))

    generation = Generation(prompt, sampling, seed, on_text, done)
    try:
        engine.submit(generation)
    except EngineBusy as exc:
        raise ApiError(503, str(exc), "server_error", code="overloaded") from None
    name = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    if body.get("stream"):
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return StreamingResponse(_sse(engine, name, events, generation, chat, cut, usage),
                                 media_type="text/event-stream")
    text = []
    checked = time.monotonic()
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), timeout=DISCONNECT_POLL_S)
            except TimeoutError:
                kind = None
            if time.monotonic() - checked >= DISCONNECT_POLL_S:
                checked = time.monotonic()
                if await request.is_disconnected():  # the client gave up: stop generating
                    generation.stop.stop()
                    return Response(status_code=499)
            if kind is None:
                continue
            if kind == "text":
                text.append(value)
            else:
                break
    except asyncio.CancelledError:  # the server is shutting down
        generation.stop.stop()
        raise
    completion = _finished(value)
    return _whole(engine, name, "".join(text), completion, cut.hit, chat)


def _finished(result):
    if isinstance(result, BaseException):
        raise ApiError(500, f"Generation failed: {result}", "server_error")
    return result


def _finish_reason(completion, stopped_by_string: bool) -> str:
    return "stop" if completion.finished or stopped_by_string else "length"


def _usage(completion) -> dict:
    return {"completion_tokens": completion.completion_tokens,
            "prompt_tokens": completion.prompt_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


def _whole(engine: Engine, name: str, text: str, completion, stopped: bool, chat: bool) -> dict:
    reason = _finish_reason(completion, stopped)
    choice = ({"index": 0, "message": {"role": "assistant", "content": text},
               "finish_reason": reason, "logprobs": None} if chat else
              {"index": 0, "text": text, "finish_reason": reason, "logprobs": None})
    return {"id": name, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": engine.model_id, "choices": [choice],
            "usage": _usage(completion)}


async def _sse(engine: Engine, name: str, events: asyncio.Queue, generation: Generation,
               chat: bool, cut: _StopStrings, usage: bool) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict | str, reason: str | None = None) -> str:
        if chat:
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": delta, "finish_reason": reason, "logprobs": None}
        data = {"id": name, "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created, "model": engine.model_id, "choices": [choice]}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    try:
        if chat:
            yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await events.get()
            if kind == "text":
                yield chunk({"content": value} if chat else value)
                continue
            if isinstance(value, BaseException):
                error = {"error": {"message": f"Generation failed: {value}",
                                   "type": "server_error", "param": None, "code": None}}
                yield f"data: {json.dumps(error)}\n\n"
            else:
                yield chunk({} if chat else "", _finish_reason(value, cut.hit))
                if usage:  # stream_options.include_usage: one more chunk, with no choices
                    data = {"id": name, "object": "chat.completion.chunk" if chat
                            else "text_completion", "created": created,
                            "model": engine.model_id, "choices": [],
                            "usage": _usage(value)}
                    yield f"data: {json.dumps(data)}\n\n"
            yield "data: [DONE]\n\n"
            return
    finally:  # the client went away mid-stream, or the stream ended: stop generating
        generation.stop.stop()


class _StopStrings:
    """Cuts the streamed text at the first stop string: text that might be the start of one is
    held back until it is clear."""

    def __init__(self, stops: list[str]):
        self.stops, self.pending, self.hit = stops, "", False

    def feed(self, delta: str) -> str:
        if not self.stops:
            return delta
        if self.hit:
            return ""
        text = self.pending + delta
        cuts = [text.find(s) for s in self.stops if s in text]
        if cuts:
            self.hit, self.pending = True, ""
            return text[:min(cuts)]
        hold = max((k for s in self.stops for k in range(1, len(s))
                    if text.endswith(s[:k])), default=0)
        self.pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold]

    def flush(self) -> str:
        rest, self.pending = ("" if self.hit else self.pending), ""
        return rest
