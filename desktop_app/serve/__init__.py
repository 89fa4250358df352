"""The tuned model for other apps: an OpenAI-compatible endpoint on this machine
(``rlhf-desk serve``).

``engine.py`` holds the model and generates one response at a time on its own thread, with the
requests waiting in a queue; ``api.py`` is the HTTP side (FastAPI on uvicorn): the routes, the
API key, the size limit and OpenAI's error shapes; ``server.py`` starts and stops it, for the
CLI and the app. No Qt here.
"""
