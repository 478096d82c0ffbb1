"""Error pages of the console: in its layout, saying what happened and the
way back; the partner API keeps answering problem+json."""

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from programs.actors import Actor
from programs.services import exception_raise

pytestmark = pytest.mark.django_db


def test_an_item_of_another_organization_is_a_404_page_in_the_console_layout(
    client, other_org, coordinator
):
    # given
    theirs, _ = exception_raise(
        organization=other_org, kind="manual", title="x", dedup_key="x", actor=Actor.system("t")
    )
    client.force_login(coordinator)
    # when
    page = client.get(reverse("console:item", args=[theirs.pk]))
    # then
    assert page.status_code == 404
    body = page.content.decode()
    assert "Not found" in body and f"/console/items/{theirs.pk}/" in body
    assert "My queue" in body  # the navigation is there
    assert "Back to the console" in body


@pytest.mark.parametrize(
    "url",
    [
        "/console/queue/open/?severity=%00",
        "/admin/programs/opsexception/?state=%00",  # any field: was a 500 on PostgreSQL
        "/admin/auth/user/?username__startswith=a%00",
    ],
)
def test_a_nul_character_in_the_query_string_is_a_400_page(admin_client, url):
    page = admin_client.get(url)
    assert page.status_code == 400
    body = page.content.decode()
    assert "Bad request" in body and "NUL character" in body
    assert "Back to the console" in body


def test_the_partner_api_answers_a_nul_character_itself(partner):
    response = partner.get("/api/v1/enrollments/?state=%00")
    assert response.status_code == 422
    assert response["Content-Type"].startswith("application/problem+json")


def test_an_unknown_api_path_still_answers_problem_json(client):
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")


def test_a_form_without_its_csrf_token_says_it_expired_and_changes_nothing(org, coordinator):
    # given a browser session, and a POST that lost its token
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(coordinator)
    item, _ = exception_raise(
        organization=org, kind="manual", title="t", dedup_key="t", actor=Actor.system("t")
    )
    # when
    page = browser.post(reverse("console:item_action", args=[item.pk, "claim"]))
    # then
    assert page.status_code == 403
    assert "This form has expired" in page.content.decode()
    item.refresh_from_db()
    assert item.state == "open"


def test_the_server_error_page_renders_without_a_request_context():
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/console/"))
    assert response.status_code == 500
    assert b"Something went wrong" in response.content
