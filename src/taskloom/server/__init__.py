"""The HTTP server: the engine's operations under `/api`, live events, tokens, and the
dashboard's assets at `/`.

`app.create_app(engine)` makes the FastAPI app; `http.HttpServer` serves it with uvicorn in
the engine's event loop (what `taskloom serve` does). Nothing is imported here, so the CLI
can use `tokens` without loading the web stack.
"""
