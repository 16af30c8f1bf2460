"""The sign-in and sign-out pages (``--sign-in token``; :mod:`visionops_console.signin` says how it works)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from visionops_console.core import Console, log
from visionops_console.kube import ClusterUnavailable, Rejection
from visionops_console.signin import local_path, session_cookie, session_key

MAX_TOKEN = 16 * 1024  # a bearer token is a few KB at most


def page_signin(console: Console, request: Request) -> Response:
    return console.render(request, "signin.html", "", next=local_path(request.query_params.get("next", "/data")),
                          problem="", status_code=200)


async def form_signin(console: Console, request: Request) -> Response:
    """Check the token with the API server (who is it?); on success a session and back to where the person was."""
    form = await request.form(max_files=0, max_fields=4)
    token, target = str(form.get("token") or "").strip(), local_path(str(form.get("next") or "/data"))

    def again(problem: str, status: int) -> Response:
        return console.render(request, "signin.html", "", status_code=status, next=target, problem=problem)

    if console.settings.sign_in != "token":
        return await console.blocking(again, "this console does not sign people in (--sign-in none)", 404)
    if not token or len(token) > MAX_TOKEN or any(c.isspace() for c in token):
        return await console.blocking(again, "paste one bearer token (kubectl create token <serviceaccount>, or "
                                             "your identity provider's id-token)", 400)
    try:
        person = await console.blocking(console.cluster.as_user, token)
        user, groups = await console.blocking(person.whoami)
    except Rejection as exc:
        return await console.blocking(again, exc.message, 401)
    except ClusterUnavailable as exc:
        return await console.blocking(again, f"signing in needs the Kubernetes API: {exc}", 503)
    key = console.sessions.open(user, groups, person)
    log.info("signed in: %s", user)
    response = RedirectResponse(target, status_code=303)
    response.headers["set-cookie"] = session_cookie(request, key, int(console.sessions.ttl))
    return response


async def form_signout(console: Console, request: Request) -> Response:
    person = console.person(request)
    console.sessions.close(session_key(request))
    if person is not None:
        log.info("signed out: %s", person.user)
    response = RedirectResponse("/data", status_code=303)
    response.headers["set-cookie"] = session_cookie(request, "", 0)
    return response
