"""The REST API (`keyturn serve`): FastAPI app factory, bearer tokens with roles, metrics, JSON logs.

Needs the ``server`` extra (fastapi, uvicorn, prometheus-client). Import `create_app` from
`keyturn.api.app`; this package imports nothing heavy itself.
"""
