"""``paddyclf serve``: the diagnosis web app and JSON API, its photo store, and its export back to a dataset.

Layers, lowest first (a module imports only those above it in this list):

- :mod:`.config`: :class:`ServeConfig`, the one source of the server's defaults (the CLI is built from it);
- :mod:`.photos`: an upload's bytes -> an RGB photo with orientation applied, EXIF stripped, GPS read,
  or a :class:`~.errors.RequestError` (4xx) that names the file;
- :mod:`.store`: SQLite (WAL, schema version, migrations) and the content-addressed photo files;
- :mod:`.batching`: dynamic batching of single images from concurrent requests on one worker thread;
- :mod:`.service`: the app's plain functions (diagnose, list, review, Grad-CAM), no HTTP in them;
- :mod:`.app`: the FastAPI routes and pages, a thin layer over the service;
- :mod:`.export`: ``paddyclf serve-export``, the reviewed photos as images + metadata.csv + label2id.json.

Only :mod:`.app` needs the ``[serve]`` extra (FastAPI, uvicorn); the store and the export need nothing.
"""
