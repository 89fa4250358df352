"""`rlhf-desk serve` (``desktop_app/serve``) on a tiny chat model: the official `openai` client
over a real socket on localhost, streaming and not; the error statuses in process (and the key
over the socket); 20 requests at once; and --collect storing the prompts."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import openai
import pytest
from fastapi.testclient import TestClient

from desktop_app.cli import main
from desktop_app.core.data.store import Store
from desktop_app.core.workspace import Workspace
from desktop_app.serve.api import create_api
from desktop_app.serve.collect import collector
from desktop_app.serve.engine import Engine
from desktop_app.serve.server import ServeError, Server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def engine(llama_chat_dir):
    engine = Engine.load(str(llama_chat_dir), device="cpu")
    yield engine
    engine.close()


@pytest.fixture
def server(engine):
    """The engine behind a real socket (a free port on 127.0.0.1), stopped afterwards without
    closing the shared engine."""
    srv = Server(engine, port=0)
    srv.start()
    yield srv
    srv._uvicorn.should_exit = True
    srv._thread.join(timeout=30)


def client(srv: Server, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url, api_key=key, max_retries=0, timeout=120)


def test_the_openai_client_chats_streaming_and_not(server, engine):
    oa = client(server)
    assert [m.id for m in oa.models.list()] == [engine.model_id]
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Where is the cat?"},
                {"role": "assistant", "content": "On the mat."},
                {"role": "user", "content": "And the dog?"}]
    whole = oa.chat.completions.create(model=engine.model_id, messages=messages,
                                       max_tokens=12, seed=7, temperature=0.8)
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens <= 12 and whole.usage.prompt_tokens > 10

    # Streamed with the same seed: the same text, in pieces.
    stream = oa.chat.completions.create(model=engine.model_id, messages=messages,
                                        max_tokens=12, seed=7, temperature=0.8, stream=True)
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert "".join(pieces) == choice.message.content and len(pieces) > 2
    assert chunks[-1].choices[0].finish_reason == choice.finish_reason
    counted = list(oa.chat.completions.create(
        model=engine.model_id, messages=messages, max_tokens=12, seed=7, temperature=0.8,
        stream=True, stream_options={"include_usage": True}))
    assert counted[-1].choices == [] and counted[-1].usage.total_tokens == \
        whole.usage.total_tokens

    # A plain completion continues the text as it is (no chat template).
    text = oa.completions.create(model=engine.model_id, prompt="The cat sat", max_tokens=6,
                                 seed=3)
    streamed = oa.completions.create(model=engine.model_id, prompt="The cat sat",
                                     max_tokens=6, seed=3, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text.choices[0].text


def test_bad_requests_get_the_status_a_client_expects(engine):
    http = TestClient(create_api(engine, max_body=4000))
    url = "/v1/chat/completions"
    ok = {"model": engine.model_id, "messages": [{"role": "user", "content": "Hi"}],
          "max_tokens": 2}
    assert http.post(url, json=ok).status_code == 200
    cases = [
        (http.post(url, content=b"{not json"), 400, "not valid JSON"),
        (http.post(url, content=b"[1, 2]"), 400, "JSON object"),
        (http.post(url, content=json.dumps(ok | {"pad": "x" * 5000})), 413, "larger than"),
        (http.post(url, json=ok | {"model": "gpt-9"}), 404, "does not exist"),
        (http.post(url, json=ok | {"messages": []}), 400, "non-empty list"),
        (http.post(url, json=ok | {"messages": [{"role": "robot", "content": "x"}]}), 400,
         "role"),
        (http.post(url, json=ok | {"max_tokens": 0}), 400, "max_tokens"),
        (http.post(url, json=ok | {"temperature": "hot"}), 400, "temperature"),
        (http.post(url, json=ok | {"n": 3}), 400, "n = 1"),
        (http.post("/v1/completions", json={"model": engine.model_id, "prompt": 5}), 400,
         "prompt"),
        (http.get("/v1/nowhere"), 404, "Not Found"),
        (http.post(url, json={k: v for k, v in ok.items() if k != "model"}), 400,
         "'model' is required"),
        (http.post(url, json=ok | {"max_tokens": 16, "messages": [
            {"role": "user", "content": "cat " * 700}]}), 400, "at most 496"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (status, response.text)
        error = response.json()["error"]
        assert words in error["message"] and error["type"], response.text


def test_a_server_off_this_machine_needs_its_key(engine):
    with pytest.raises(ServeError, match="needs an API key"):
        Server(engine, host="0.0.0.0", port=0)
    srv = Server(engine, port=0, api_key="s3cret")  # loopback, key set: still required
    srv.start()
    try:
        for key in (None, "wrong"):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            response = httpx.get(srv.url + "/models", headers=headers)
            assert response.status_code == 401 and "API key" in response.json()["error"][
                "message"]
        with pytest.raises(openai.AuthenticationError):
            client(srv, "wrong").models.list()
        assert client(srv, "s3cret").models.list().data[0].id == engine.model_id
    finally:
        srv._uvicorn.should_exit = True
        srv._thread.join(timeout=30)


def test_twenty_requests_at_once_all_complete(server, engine):
    oa = client(server)
    served = engine.served

    def ask(i: int) -> str:
        reply = oa.chat.completions.create(
            model=engine.model_id, max_tokens=4, seed=i,
            messages=[{"role": "user", "content": f"Question {i}: where is the cat?"}])
        return reply.choices[0].finish_reason

    with ThreadPoolExecutor(20) as pool:
        reasons = list(pool.map(ask, range(20)))
    assert len(reasons) == 20 and set(reasons) <= {"stop", "length"}
    assert engine.served - served == 20
    assert server.requests >= 20


def test_collect_stores_each_conversation_as_a_workspace_prompt(engine, tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    srv = Server(engine, port=0, collect=collector(ws.db_path))
    srv.start()
    try:
        oa = client(srv)
        for content in ("Tell me about the sea.", "Tell me about the sea."):
            oa.chat.completions.create(model=engine.model_id, max_tokens=2,
                                       messages=[{"role": "user", "content": content}])
        oa.chat.completions.create(model=engine.model_id, max_tokens=2, messages=[
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What rhymes with cat?"}])
    finally:
        srv._uvicorn.should_exit = True
        srv._thread.join(timeout=30)
    with Store(ws.db_path) as store:
        rows = [store.get_prompt(p["id"]) for p in store.list_prompts()]
    assert [(r["source"], r["text"]) for r in rows] == [
        ("serve", "Tell me about the sea."),
        ("serve", "User: Hi\n\nAssistant: Hello!\n\nUser: What rhymes with cat?")]
    assert json.loads(rows[1]["messages"])[-1] == {"role": "user",
                                                   "content": "What rhymes with cat?"}


def test_the_cli_refuses_a_public_address_without_a_key(capsys, tmp_path, llama_chat_dir):
    code = main(["--workspace", str(tmp_path / "ws"), "serve", "--model", str(llama_chat_dir),
                 "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 1 and "needs an API key" in err and len(err.splitlines()) == 1


def test_a_client_that_leaves_mid_stream_stops_its_generation(server, engine, monkeypatch):
    from waiting import poll_until
    requests = []
    submit = engine.submit
    monkeypatch.setattr(engine, "submit", lambda r: (requests.append(r), submit(r)))
    body = {"model": engine.model_id, "max_tokens": 400, "stream": True, "temperature": 2.0,
            "messages": [{"role": "user", "content": "Talk about the cat for a long time."}]}
    with httpx.stream("POST", server.url + "/chat/completions", json=body) as response:
        next(line for line in response.iter_lines() if line.startswith("data:"))
    assert poll_until(lambda: requests and requests[0].stop.requested, timeout=30)
    # The engine is free again: the next request is answered.
    assert client(server).chat.completions.create(
        model=engine.model_id, max_tokens=2,
        messages=[{"role": "user", "content": "Hi"}]).choices[0].message.role == "assistant"


def test_a_client_that_gives_up_on_a_whole_answer_stops_its_generation(server, engine,
                                                                        monkeypatch):
    """Not streamed: the server notices the client has gone while it waits, and stops the
    generation (a stand-in that writes until stopped keeps the timing out of the model)."""
    import time

    from desktop_app.ml.generation.playground import Completion
    stopped = []

    def endless(prompt, side, sampling, seed, on_text, stop):
        deadline = time.monotonic() + 30
        while not stop.requested and time.monotonic() < deadline:
            on_text("word ")
            time.sleep(0.05)
        stopped.append(stop.requested)
        return Completion(side, "", [], 0, False, stop.requested, seed)

    monkeypatch.setattr(engine.playground, "stream", endless)
    body = {"model": engine.model_id, "max_tokens": 100,
            "messages": [{"role": "user", "content": "Go on forever."}]}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/chat/completions", json=body, timeout=0.5)
    from waiting import poll_until
    assert poll_until(lambda: stopped, timeout=10) and stopped == [True]
