"""What serves a finished run's model over HTTP: the OpenAI-compatible API (``qlorafx serve``).
FastAPI and uvicorn come with the optional extra ``qlorafx[serve]``; only this package imports them."""
