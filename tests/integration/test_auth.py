"""Login, logout, password change, rate limit, CSRF, the login gate and roles."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from werkzeug.routing import AnyConverter, IntegerConverter

from tests.conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, csrf_token, login
from Webapp import create_app
from Webapp.storage.models import AuditEntry

PUBLIC_ENDPOINTS = {"auth.login", "health.healthz", "static", "kite_auth.postback"}


def test_good_login_opens_the_dashboard(client, admin):
    response = login(client, admin, ADMIN_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "Live prices" in page.text
    assert admin in page.text


def test_bad_password_is_refused_and_audited(app, client, admin):
    response = login(client, admin, "wrong-password-1")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert client.get("/").status_code == 302
    with app.extensions["ladder"].sessions() as session:
        actions = session.scalars(select(AuditEntry.action)).all()
    assert actions == ["login_failed"]


def test_unknown_user_is_refused_like_a_bad_password(client, admin):
    response = login(client, "mallory", ADMIN_PASSWORD)
    assert response.status_code == 401
    assert "Wrong username or password" in response.text


def test_disabled_user_cannot_log_in(app, client, admin, viewer):
    from Webapp.storage import users
    from Webapp.storage.db import transaction

    with transaction(app.extensions["ladder"].sessions) as session:
        users.set_disabled(session, users.get_by_username(session, viewer), True)
    assert login(client, viewer, VIEWER_PASSWORD).status_code == 401


def test_sixth_login_attempt_in_a_minute_is_rate_limited(client, admin):
    statuses = [login(client, admin, "wrong-password-1").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    # Even the right password waits now: the limit is per client address.
    assert login(client, admin, ADMIN_PASSWORD).status_code == 429


def test_rate_limit_counts_per_client_address(client, admin):
    for _ in range(5):
        login(client, admin, "wrong-password-1")
    page = client.get("/login", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    other = client.post(
        "/login",
        data={"username": admin, "password": ADMIN_PASSWORD, "csrf_token": csrf_token(page.text)},
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert other.status_code == 302


def test_login_without_csrf_token_is_400(client, admin):
    client.get("/login")
    response = client.post("/login", data={"username": admin, "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.text


def test_logged_in_post_without_csrf_token_is_400(admin_client):
    response = admin_client.post("/logout")
    assert response.status_code == 400
    assert admin_client.get("/").status_code == 200  # still logged in


def test_logout_ends_the_session(admin_client):
    page = admin_client.get("/")
    response = admin_client.post("/logout", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    assert admin_client.get("/").status_code == 302


def test_every_route_but_the_public_ones_needs_a_session(app):
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        url = rule.build({a: _sample(rule, a) for a in rule.arguments})[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            assert response.status_code in (302, 401), (method, url, response.status_code)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/login")
            checked += 1
    assert checked >= 6  # the walk really found the app's routes


def _sample(rule, arg):
    """A plausible value for one URL argument, chosen by its converter."""
    converter = rule._converters[arg]
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0]
    if isinstance(converter, IntegerConverter):
        return 1
    return "x"


def test_htmx_request_without_session_gets_401_and_a_redirect_header(client):
    response = client.post("/users/1/disabled/on", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"


def test_public_routes_need_no_session(client):
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/static/css/app.css").status_code == 200


def test_unknown_url_without_session_reveals_nothing(client):
    assert client.get("/no/such/page").status_code == 302


def test_login_redirects_only_to_same_site_paths(client, admin):
    page = client.get("/login")
    response = client.post(
        "/login?next=//evil.example/",
        data={"username": admin, "password": ADMIN_PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.headers["Location"] == "/"


def test_viewer_sees_the_dashboard(viewer_client):
    assert viewer_client.get("/").status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [("GET", "/users/"), ("POST", "/users/"), ("POST", "/users/1/disabled/on")],
)
def test_viewer_is_refused_admin_actions(viewer_client, method, url):
    token = csrf_token(viewer_client.get("/account/password").text)
    response = viewer_client.open(
        url,
        method=method,
        data={"csrf_token": token, "username": "x", "password": "long-enough-1", "role": "admin"},
    )
    assert response.status_code == 403


def test_admin_creates_a_user_who_can_log_in(app, admin_client):
    token = csrf_token(admin_client.get("/users/").text)
    response = admin_client.post(
        "/users/",
        data={
            "csrf_token": token,
            "username": "bob",
            "password": "bobs-password-1",
            "role": "viewer",
        },
    )
    assert response.status_code == 200
    assert "User bob (viewer) created." in response.text
    fresh = app.test_client()
    assert login(fresh, "bob", "bobs-password-1").status_code == 302


def test_admin_disabling_a_user_ends_their_session(app, admin_client, viewer):
    other = app.test_client()
    assert login(other, viewer, VIEWER_PASSWORD).status_code == 302
    token = csrf_token(admin_client.get("/users/").text)
    from Webapp.storage import users

    with app.extensions["ladder"].sessions() as session:
        viewer_id = users.get_by_username(session, viewer).id
    response = admin_client.post(
        f"/users/{viewer_id}/disabled/on", data={"csrf_token": token}, headers={"HX-Request": "1"}
    )
    assert response.status_code == 200
    assert 'data-username="victor"' in response.text and "disabled" in response.text
    assert other.get("/").status_code == 302


def test_last_admin_cannot_be_disabled(app, admin_client, admin):
    from Webapp.storage import users

    with app.extensions["ladder"].sessions() as session:
        admin_id = users.get_by_username(session, admin).id
    token = csrf_token(admin_client.get("/users/").text)
    response = admin_client.post(
        f"/users/{admin_id}/disabled/on", data={"csrf_token": token}, headers={"HX-Request": "1"}
    )
    assert "last enabled admin" in response.text
    assert admin_client.get("/").status_code == 200


def test_change_own_password_ends_other_sessions(app, viewer_client, viewer):
    other = app.test_client()
    assert login(other, viewer, VIEWER_PASSWORD).status_code == 302
    token = csrf_token(viewer_client.get("/account/password").text)
    response = viewer_client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": VIEWER_PASSWORD,
            "new_password": "new-password-22",
            "confirm": "new-password-22",
        },
    )
    assert response.status_code == 302
    assert viewer_client.get("/").status_code == 200  # this session goes on
    assert other.get("/").status_code == 302  # the other one ended
    assert login(app.test_client(), viewer, "new-password-22").status_code == 302


def test_change_password_with_wrong_current_password_changes_nothing(app, viewer_client, viewer):
    token = csrf_token(viewer_client.get("/account/password").text)
    response = viewer_client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": "not-my-password",
            "new_password": "new-password-22",
            "confirm": "new-password-22",
        },
    )
    assert response.status_code == 200
    assert "current password is wrong" in response.text
    assert login(app.test_client(), viewer, VIEWER_PASSWORD).status_code == 302


def test_session_cookie_is_httponly_and_samesite_lax(client, admin):
    response = login(client, admin, ADMIN_PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_over_https(client, admin):
    page = client.get("/login", base_url="https://localhost")
    response = client.post(
        "/login",
        base_url="https://localhost",
        # Over HTTPS Flask-WTF also checks the Referer, as browsers send it.
        headers={"Referer": "https://localhost/login"},
        data={"username": admin, "password": ADMIN_PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_behind_nginx_https_comes_from_x_forwarded_proto(settings, admin):
    app = create_app({"TESTING": True}, settings=settings.model_copy(update={"trust_proxy": True}))
    client = app.test_client()
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.7",
        "Referer": "https://localhost/login",
    }
    page = client.get("/login", headers=headers)
    response = client.post(
        "/login",
        headers=headers,
        data={"username": admin, "password": ADMIN_PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]
    with app.extensions["ladder"].sessions() as session:
        entry = session.scalars(select(AuditEntry)).one()
    assert entry.client_addr == "203.0.113.7"


def test_passwords_are_stored_as_argon2id(app, admin):
    from Webapp.storage import users

    with app.extensions["ladder"].sessions() as session:
        stored = users.get_by_username(session, admin).password_hash
    assert stored.startswith("$argon2id$")
    assert ADMIN_PASSWORD not in stored
