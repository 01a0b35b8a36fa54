"""The ingress: verified generic, GitHub, GitLab and Slack webhooks, durable before 202.

``create_ingress_app(settings)`` builds the public Starlette app;
``services.ingress.main.run(settings)`` serves it (and the admin app) with uvicorn.
"""

from services.ingress._app import create_ingress_app

__all__ = ["create_ingress_app"]
