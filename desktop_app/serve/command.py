"""``rlhf-desk serve --model DIR [--policy RUN_ID] [--host 127.0.0.1] [--port 8000] [--collect]
[--api-key KEY]``: the base model, or a trained policy on it, as an OpenAI-compatible
endpoint until Ctrl+C."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

API_KEY_ENV = "RLHF_DESK_API_KEY"


def cmd_serve(args: argparse.Namespace, out) -> int:
    from desktop_app.cli import CliError, _open_store
    from desktop_app.core.runs.record import POLICY_KINDS
    from desktop_app.core.wording import count
    from desktop_app.serve.collect import collector
    from desktop_app.serve.engine import Engine
    from desktop_app.serve.server import Server, is_loopback, listening_socket
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CliError("serve needs FastAPI and uvicorn: pip install 'rlhf-desk[serve]'") \
            from None
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(args.host) and not api_key:
        raise CliError(f"serving on {args.host} makes the model reachable from other machines, "
                       f"so it needs an API key: --api-key KEY or {API_KEY_ENV}")
    workspace, store = _open_store(args)
    adapter, model_id = None, None
    with store:
        model = args.model
        if args.policy is not None:
            run = store.get_run(args.policy)
            if run is None:
                raise CliError(f"there is no run {args.policy}")
            adapter = str(run.require_artifact(POLICY_KINDS, "serve --policy"))
            model = model or run.config.get("base_model")
            model_id = f"{Path(model).name}-{run.kind}-{run.id}"
    if not model:
        raise CliError("--model is required (or --policy RUN_ID, which knows its base model)")
    listening_socket(args.host, args.port).close()  # a port in use is said before loading
    out.info(f"Loading {model}" + (f" with the policy of run {args.policy}" if adapter else ""))
    engine = Engine.load(model, policy_adapter=adapter, model_id=model_id, device=args.device,
                         quantize=args.quantize)
    try:
        server = Server(engine, host=args.host, port=args.port, api_key=api_key,
                        collect=collector(workspace.db_path) if args.collect else None,
                        access_log=True)
    except BaseException:
        engine.close()
        raise
    out.info(f"Serving {engine.model_id} at {server.url} (OpenAI API: /chat/completions, "
             f"/completions, /models){'; collecting prompts' if args.collect else ''}. "
             "Ctrl+C stops.")
    try:
        server.run()
    finally:
        engine.close()
    out.result({"model": engine.model_id, "url": server.url, "requests": server.requests},
               f"Stopped after {count(server.requests, 'request')}.")
    return 0


def add_serve_command(command) -> None:
    from desktop_app.core.config import QUANTIZE_CHOICES
    p = command("serve", cmd_serve,
                "serve the base model, or a trained policy on it, as an OpenAI-compatible "
                "endpoint (/v1/chat/completions, /v1/completions, /v1/models) for other apps")
    p.add_argument("--model", help="base model folder (default with --policy: its base)")
    p.add_argument("--policy", type=int, metavar="RUN_ID",
                   help="a completed PPO, RLOO or DPO run: serve its policy")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any "
                        "other needs --api-key)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (or set "
                                     f"{API_KEY_ENV})")
    p.add_argument("--collect", action="store_true",
                   help="store each chat request's conversation as a workspace prompt (source "
                        "'serve') for the next round; off by default")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="none",
                   help="store the base weights in 8 or 4 bits (bitsandbytes)")
