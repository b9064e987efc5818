"""Signing in on the web page with a sign-in token of the school management system: the person is who the token
names (not who the staff register has), each message goes out under the gateway's certificate carrying that
token, the services act on it as that person, and when the sign-in ends the person is sent back to sign in."""

from __future__ import annotations

import contextlib
import html
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt
from starlette.testclient import TestClient

from hocba.web.app import Gateway, GatewayConfig, build_app
from hocba.web.board import Board
from hocba.web.people import DelegatingVoucher, DevelopmentVoucher, GatewayVoucher, SignIn
from services.signing.app import build_app as build_signing
from services.signing.repository import InMemorySigningRepository
from shared.auth import (
    ALGORITHM,
    GATEWAY_SUBJECT,
    Actor,
    IssuerKey,
    ServiceIdentity,
    Unauthenticated,
    issue_sign_in_token,
    sign_in_claims,
    verify_token,
)
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import RequestSignBatch
from tests.unit.gateway.conftest import InMemoryLink, Page
from tests.unit.signing.trust import SCHOOL, YEAR

PRINCIPAL, HOMEROOM_6A1, HOMEROOM_6A2 = f"ht-{SCHOOL}", f"gvcn-{SCHOOL}-6A1", f"gvcn-{SCHOOL}-6A2"
FINGERPRINT = re.compile(r'name="reviewed" value="([0-9a-f]+)"')


def text(page: str) -> str:
    """What a person reads on the page: the tags dropped, the spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def batch_id(response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["location"].removeprefix("/batches/")


def ready(trust, count: int) -> RecordsReady:
    """`count` records of classes 6A1 (even) and 6A2 (odd), assembled and sealed by grades."""
    return RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[trust.record(n) for n in range(count)])


class Clock:
    """The gateway's clock, moved on by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def principal(**changes: Any) -> Actor:
    """The principal as the school management system knows them (a name the staff register does not have)."""
    fields = {"subject": PRINCIPAL, "name": "Hiệu trưởng Đỗ Minh Châu", "roles": frozenset({"principal"})}
    return Actor(**{"school_code": SCHOOL, **fields, **changes})


def homeroom_teacher(class_name: str) -> Actor:
    return Actor(
        subject=f"gvcn-{SCHOOL}-{class_name}",
        name=f"Giáo viên chủ nhiệm {class_name}",
        roles=frozenset({"homeroom_teacher"}),
        school_code=SCHOOL,
        classes=frozenset({class_name}),
        homeroom_class=class_name,
    )


@pytest.fixture
def delegated_signing(settings, trust):
    """signing as configured in production: the issuer's tokens, and tokens under a certificate of the PKI."""
    repo = InMemorySigningRepository()
    keys = trust.issuer.public_keys().for_service("signing", services=trust.pki.trust_store)
    return build_signing(settings, repository=repo, signers=trust.checked_signers(), issuer_keys=keys), repo


@pytest.fixture
def token_web(trust, register) -> Callable[..., contextlib.AbstractContextManager[tuple[Page, Clock]]]:
    """`token_web(*services, picker=True)`: the gateway taking sign-in tokens from the issuer, vouching with its own
    certificate (svc-web); with `picker`, the development picker beside it (as in development)."""

    @contextlib.contextmanager
    def running(*services: Any, picker: bool = True) -> Iterator[tuple[Page, Clock]]:
        board, clock = Board(), Clock()
        link = InMemoryLink(board, *services)
        delegating = DelegatingVoucher(ServiceIdentity("web", lambda: trust.pki.signer(GATEWAY_SUBJECT)))
        development = DevelopmentVoucher(trust.issuer, lambda: register) if picker else None
        gateway = Gateway(
            config=GatewayConfig(school_year=YEAR, session_key="test-session-key", poll_seconds=0.5),
            link=link,
            board=board,
            voucher=GatewayVoucher(delegating, development),
            register=lambda: register,
            sign_in=SignIn(trust.issuer.public_keys().for_sign_in(), clock),
            picker=picker,
        )
        with TestClient(build_app(gateway), follow_redirects=False) as client:
            yield Page(client, link, board), clock

    return running


def sign_in_with(page: Page, token: str, **headers: str):
    page.client.cookies.clear()
    page.client.get("/sign-in")
    return page.client.post("/sign-in/token", data={"token": token}, headers=headers)


# --- signing in ----------------------------------------------------------------------------------


def test_the_sign_in_page_has_a_form_for_a_sign_in_token_beside_the_development_picker(token_web, delegated_signing):
    with token_web(delegated_signing[0]) as (page, _):
        shown = page.client.get("/sign-in").text
    assert '<form method="post" action="/sign-in/token"' in shown and 'name="token"' in shown
    assert '<select id="who" name="who"' in shown and '<form method="post" action="/sign-in"' in shown
    assert "hocba web token --as" in shown


def test_a_good_sign_in_token_signs_in_the_person_it_names_and_opens_their_page(token_web, trust, delegated_signing):
    token = issue_sign_in_token(trust.issuer, principal())
    with token_web(delegated_signing[0]) as (page, _):
        signed_in = sign_in_with(page, token)
        home = page.client.get(signed_in.headers["location"])
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, f"/schools/{SCHOOL}")
    assert home.status_code == 200
    assert re.search(r'data-testid="viewer">([^<]*)<', home.text).group(1).startswith("Hiệu trưởng Đỗ Minh Châu"), (
        "the name is the token's, not the staff register's (Nguyễn Thị Hoa)"
    )
    assert "Dịch vụ ký không trả lời phần rà soát" not in text(home.text), "signing answered the gateway's token"


def test_the_person_comes_from_the_token_even_when_the_staff_register_does_not_list_them(
    token_web, trust, delegated_signing
):
    stranger = principal(subject="ht-79000799", school_code="79000799", name="Hiệu trưởng trường mới")
    with token_web(delegated_signing[0]) as (page, _):
        signed_in = sign_in_with(page, issue_sign_in_token(trust.issuer, stranger))
        assert signed_in.headers["location"] == "/schools/79000799"
        assert page.client.get("/schools/79000799").status_code == 200
        assert page.client.get(f"/schools/{SCHOOL}").status_code == 403, "another school's page stays closed"


def test_each_message_goes_under_the_gateways_certificate_as_the_person_signed_in(token_web, trust, delegated_signing):
    with token_web(delegated_signing[0]) as (page, _):
        sign_in_with(page, issue_sign_in_token(trust.issuer, principal()))
        page.post(f"/schools/{SCHOOL}/sign")
    keys = trust.issuer.public_keys().for_service("signing", services=trust.pki.trust_store)
    click = next(m for m in page.link.sent if isinstance(m, RequestSignBatch))
    assert verify_token(click, keys).subject == PRINCIPAL
    assert verify_token(click, keys).is_principal_of(SCHOOL)
    with pytest.raises(Unauthenticated, match="not accepted here"):
        verify_token(click, trust.issuer.public_keys("signing"))


def test_the_homeroom_teachers_and_the_principal_signed_in_by_token_sign_the_whole_school(
    token_web, trust, delegated_signing
):
    """The term end as the services see it behind the gateway: each signature is the person's who signed in."""
    service, repo = delegated_signing
    with token_web(service) as (page, _):
        page.run(page.link.publish, ready(trust, 6))
        for class_name in ("6A1", "6A2"):
            sign_in_with(page, issue_sign_in_token(trust.issuer, homeroom_teacher(class_name)))
            shown = page.client.get(f"/schools/{SCHOOL}/classes/{class_name}").text
            reviewed = FINGERPRINT.search(shown).group(1)
            page.post(f"/schools/{SCHOOL}/classes/{class_name}/review", {"reviewed": reviewed})
            page.post(f"/schools/{SCHOOL}/classes/{class_name}/sign")
        sign_in_with(page, issue_sign_in_token(trust.issuer, principal()))
        progress = page.client.get(f"/batches/{batch_id(page.post(f'/schools/{SCHOOL}/sign'))}/progress").json()
    assert (progress["state"], progress["records_signed"], progress["records_total"]) == ("done", 6, 6)
    signers = {(s.role, s.signer) for s, *_ in repo.signed.values()}
    assert {("homeroom_teacher", HOMEROOM_6A1), ("homeroom_teacher", HOMEROOM_6A2), ("principal", PRINCIPAL)} <= signers


# --- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "not a token", "a.b.c"])
def test_a_malformed_sign_in_token_is_refused_saying_what_to_do(token_web, delegated_signing, token):
    with token_web(delegated_signing[0]) as (page, _):
        answer = sign_in_with(page, token)
        assert page.client.get(f"/schools/{SCHOOL}").headers["location"] == "/sign-in", "nobody is signed in"
    assert answer.status_code == 400
    assert "mã đăng nhập" in text(answer.text).lower() and "hệ thống quản lý trường" in text(answer.text)
    assert "Traceback" not in answer.text


def test_a_sign_in_token_of_another_issuer_is_refused(token_web, delegated_signing):
    stranger = IssuerKey.generate("test-school-app")
    with token_web(delegated_signing[0]) as (page, _):
        answer = sign_in_with(page, issue_sign_in_token(stranger, principal()))
    assert answer.status_code == 400
    assert "Mã đăng nhập không được chấp nhận" in text(answer.text)
    assert "not signed by the school management system's key" in text(answer.text)


def test_a_message_token_is_no_sign_in_token(token_web, trust, delegated_signing):
    click = trust.staff.principal(SCHOOL).signs(RequestSignBatch(school_code=SCHOOL, school_year=YEAR))
    with token_web(delegated_signing[0]) as (page, _):
        answer = sign_in_with(page, click.actor)
    assert answer.status_code == 400 and "names a message" in text(answer.text)


def test_an_expired_sign_in_token_is_refused_saying_to_get_a_new_one(token_web, trust, delegated_signing):
    token = issue_sign_in_token(trust.issuer, principal(), timedelta(minutes=30))
    with token_web(delegated_signing[0]) as (page, clock):
        clock.offset = 3600
        answer = sign_in_with(page, token)
    assert answer.status_code == 401
    shown = text(answer.text)
    assert "Mã đăng nhập này đã hết hạn lúc" in shown and "Lấy mã đăng nhập mới" in shown
    assert "Traceback" not in answer.text


def test_when_the_sign_in_ends_the_person_is_sent_back_to_sign_in_with_a_clear_message(
    token_web, trust, delegated_signing
):
    token = issue_sign_in_token(trust.issuer, principal(), timedelta(minutes=30))
    with token_web(delegated_signing[0]) as (page, clock):
        sign_in_with(page, token)
        assert page.client.get(f"/schools/{SCHOOL}").status_code == 200
        clock.offset = 3600
        sent_before = len(page.link.sent)
        answer = page.client.get(f"/schools/{SCHOOL}")
        again = page.client.get("/sign-in").text
        assert page.client.get(f"/schools/{SCHOOL}").headers["location"] == "/sign-in", "the session is over"
    assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")
    assert len(page.link.sent) == sent_before, "nothing is sent for an ended sign-in"
    notice = re.search(r'data-testid="notice">([^<]*)<', again).group(1)
    assert notice.startswith("Phiên đăng nhập của bạn đã hết hạn lúc") and "đăng nhập lại" in notice


def test_a_sign_in_that_ends_while_a_page_is_asked_for_sends_the_person_back_to_sign_in(
    token_web, trust, delegated_signing
):
    """The page found the sign-in running; by the time a message is to go, it has ended: nothing goes out."""
    now = int(time.time())
    claims = sign_in_claims(principal(), trust.issuer.issuer, timedelta(hours=1)) | {"iat": now - 3600, "exp": now - 60}
    ended = jwt.encode({"alg": ALGORITHM, "kid": trust.issuer.kid}, claims, trust.issuer.key)
    with token_web(delegated_signing[0]) as (page, clock):
        clock.offset = -600  # the page's look at the sign-in comes before its end
        sign_in_with(page, ended)
        answer = page.client.get(f"/schools/{SCHOOL}")
        clock.offset = 0
        notice = re.search(r'data-testid="notice">([^<]*)<', page.client.get("/sign-in").text).group(1)
    assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")
    assert page.link.sent == [], "no message goes out for an ended sign-in"
    assert notice.startswith("Phiên đăng nhập của bạn đã hết hạn lúc")


def test_the_school_management_system_may_post_the_token_from_its_own_site(token_web, trust, delegated_signing):
    """A cookie set by a cross-site post is sent from the next same-site page on: the answer is a page leading there."""
    with token_web(delegated_signing[0]) as (page, _):
        answer = sign_in_with(page, issue_sign_in_token(trust.issuer, principal()), **{"sec-fetch-site": "cross-site"})
        assert page.client.get(f"/schools/{SCHOOL}").status_code == 200
    assert answer.status_code == 200
    assert f'url=/schools/{SCHOOL}"' in answer.text and "Đã đăng nhập: Hiệu trưởng Đỗ Minh Châu" in text(answer.text)


# --- production ------------------------------------------------------------------------------------


def test_without_the_development_key_there_is_no_picker_only_the_token_form(token_web, trust, delegated_signing):
    with token_web(delegated_signing[0], picker=False) as (page, _):
        shown = page.client.get("/sign-in").text
        picked = page.client.post("/sign-in", data={"who": PRINCIPAL, "csrf": page.csrf()})
        signed_in = sign_in_with(page, issue_sign_in_token(trust.issuer, principal()))
    assert 'id="who"' not in shown and 'action="/sign-in/token"' in shown
    assert "hocba web token" not in shown, "the development command is not offered"
    assert picked.status_code == 404 and "chỉ có trong môi trường phát triển" in text(picked.text)
    assert signed_in.headers["location"] == f"/schools/{SCHOOL}"
