"""``stylize-serve``: a local web page (webcam, image, video) and an HTTP API around the same
:class:`~inference.engine.stylizer.Stylizer` and :func:`~inference.app.convert.stylize_file` that ``stylize-video``
uses.

Needs the ``serve`` extra (FastAPI, uvicorn, WebSockets); nothing else in :mod:`inference` imports this package.
"""
