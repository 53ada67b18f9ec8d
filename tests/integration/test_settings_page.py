"""The Settings page: admins store the Kite api key and secret; the secret never comes back."""

from __future__ import annotations

from sqlalchemy import select, text

from tests.conftest import csrf_token
from Webapp.storage.models import AuditEntry

API_KEY = "ladder_api_key"
API_SECRET = "very_secret_api_secret_42"


def save(client, api_key: str = API_KEY, api_secret: str = API_SECRET):
    page = client.get("/settings/")
    return client.post(
        "/settings/",
        data={"api_key": api_key, "api_secret": api_secret, "csrf_token": csrf_token(page.text)},
    )


def audit_entries(app) -> list[tuple[str, dict]]:
    with app.extensions["ladder"].sessions() as session:
        return [(e.action, e.detail) for e in session.scalars(select(AuditEntry))]


def test_admin_sees_the_settings_link_and_an_empty_form(admin_client):
    dashboard = admin_client.get("/")
    assert 'href="/settings/"' in dashboard.text
    page = admin_client.get("/settings/")
    assert page.status_code == 200
    assert "API secret:" in page.text and "not stored" in page.text


def test_saved_credentials_are_encrypted_and_the_secret_is_never_shown(app, admin_client):
    response = save(admin_client)
    assert response.status_code == 302 and response.headers["Location"] == "/settings/"
    page = admin_client.get("/settings/")
    assert "Kite credentials saved." in page.text
    assert f'value="{API_KEY}"' in page.text  # the key is pre-filled: it is not a secret
    assert API_SECRET not in page.text
    assert "<strong>stored</strong>" in page.text
    with app.extensions["ladder"].db_engine.connect() as conn:
        row = " ".join(str(v) for v in conn.execute(text("SELECT * FROM kite_credentials")).one())
    assert API_KEY not in row and API_SECRET not in row


def test_every_change_is_audited_without_the_values(app, admin_client):
    save(admin_client)
    save(admin_client, api_secret="")  # blank keeps the stored secret
    save(admin_client, api_key="another_api_key", api_secret="")
    entries = audit_entries(app)
    saved = [detail for action, detail in entries if action == "kite_credentials_saved"]
    assert saved == [
        {"api_key_changed": True, "api_secret_changed": True, "token_cleared": False},
        {"api_key_changed": False, "api_secret_changed": False, "token_cleared": False},
        {"api_key_changed": True, "api_secret_changed": False, "token_cleared": False},
    ]
    assert API_SECRET not in str(entries) and API_KEY not in str(entries)


def test_first_save_without_a_secret_is_refused(admin_client):
    response = save(admin_client, api_secret="")
    assert response.status_code == 400
    assert "the api secret is required the first time" in response.text


def test_malformed_values_are_refused_without_echoing_the_secret(admin_client):
    response = save(admin_client, api_key="bad key!", api_secret="has spaces in it")
    assert response.status_code == 400
    assert "letters, digits" in response.text
    assert "has spaces in it" not in response.text


def test_viewer_cannot_see_or_change_settings(viewer_client):
    assert 'href="/settings/"' not in viewer_client.get("/").text
    assert viewer_client.get("/settings/").status_code == 403
    page = viewer_client.get("/")
    response = viewer_client.post(
        "/settings/",
        data={"api_key": API_KEY, "api_secret": API_SECRET, "csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 403


def test_save_without_csrf_token_is_refused(admin_client):
    response = admin_client.post("/settings/", data={"api_key": API_KEY, "api_secret": API_SECRET})
    assert response.status_code == 400
    assert "CSRF" in response.text
