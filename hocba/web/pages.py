"""The pages: sign-in, a school's term end (the principal's), a class's (its homeroom teacher's), the term end
across schools (the operator's), and a signing batch's live progress.

Every page but sign-in needs a signed-in person, and shows only what that person may see; every message sent
carries their actor token for it (`hocba.web.people`). A failure is shown as what was found, what was expected
and what to do, never as a traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from hocba.web import status
from hocba.web.board import BatchView
from hocba.web.people import NotSignedIn, SignInEnded, SignInRefused, Viewer, sign_in_choices, viewer_for
from shared.contracts.grades import ListRecords, RecordList
from shared.contracts.signing import ClassReviews, ConfirmReview, RequestSignBatch, ReviewClasses, ReviewConfirmed
from shared.contracts.sync import GetSyncStatus, SyncStatus
from shared.errors import NoAnswer, Refused

if TYPE_CHECKING:
    from hocba.web.app import Gateway

log = logging.getLogger("hocba.web")

SCHOOL_YEAR = re.compile(r"(\d{4})-(\d{4})")
#: What the session keeps: who signed in (a staff id, or "operator") and the token its forms carry.
WHO, CSRF = "who", "csrf"
#: ...and, for a sign-in by token, the sign-in token itself (the person is read from it at each request).
SIGN_IN = "sign_in"
#: The longest sign-in token the form takes (a person's is far smaller).
SIGN_IN_TOKEN_LIMIT = 8_000
#: Vietnam's time (no daylight saving), in which a sign-in's end is told.
VIETNAM = timezone(timedelta(hours=7))
#: A sentence for the next page the person sees (what their last action did).
NOTICE = "notice"


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/sign-in", sign_in_page, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-in/token", sign_in_with_token, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
        Route("/schools/{school}", school_page, methods=["GET"]),
        Route("/schools/{school}/sign", sign_school, methods=["POST"]),
        Route("/schools/{school}/classes/{class_name}", class_page, methods=["GET"]),
        Route("/schools/{school}/classes/{class_name}/sign", sign_class, methods=["POST"]),
        Route("/schools/{school}/classes/{class_name}/review", confirm_review, methods=["POST"]),
        Route("/operator", operator_page, methods=["GET"]),
        Route("/batches/{batch_id}", batch_page, methods=["GET"]),
        Route("/batches/{batch_id}/progress", batch_progress, methods=["GET"]),
        Route("/nothing-here", nothing_here, methods=["GET"]),
    ]


# --- what every page needs ----------------------------------------------------------------------


def gateway(request: Request) -> Gateway:
    """Everything the pages use (`hocba.web.app.build_app` puts it on the app)."""
    return request.app.state.gateway


def viewer_of(request: Request) -> Viewer | None:
    """Who is signed in: as their sign-in token names them while it holds, or (the development picker) as the staff
    register has them now; None when nobody is, their sign-in has ended (the sign-in page then says so) or they are
    no longer enrolled."""
    key = request.session.get(WHO)
    if not key:
        return None
    g = gateway(request)
    token = request.session.get(SIGN_IN)
    try:
        if token:
            if g.sign_in is None:
                raise NotSignedIn("this gateway takes no sign-in tokens")
            return g.sign_in.viewer(token)
        if not g.picker:
            raise NotSignedIn("this gateway has no development sign-in")
        return viewer_for(key, g.register())
    except SignInEnded as exc:
        request.session.clear()
        request.session[NOTICE] = session_ended(exc)
        return None
    except NotSignedIn:
        request.session.clear()
        return None


def ended_at(exc: SignInEnded) -> str:
    """ " lúc 15:30 ngày 01/12/2026" (Vietnam's time), or nothing when the end is not known."""
    return f" lúc {exc.ended_at.astimezone(VIETNAM):%H:%M ngày %d/%m/%Y}" if exc.ended_at else ""


def session_ended(exc: SignInEnded) -> str:
    """What the sign-in page tells someone whose sign-in has ended."""
    return (
        f"Phiên đăng nhập của bạn đã hết hạn{ended_at(exc)}. Hãy lấy mã đăng nhập mới từ hệ thống quản lý trường rồi "
        "đăng nhập lại."
    )


def to_sign_in() -> Response:
    return RedirectResponse("/sign-in", status_code=303)


def page(request: Request, template: str, viewer: Viewer | None, status_code: int = 200, **context: Any) -> Response:
    notice = request.session.pop(NOTICE, "") if "session" in request.scope else ""
    return gateway(request).templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "csrf": request.session.get(CSRF, ""), "notice": notice, **context},
        status_code=status_code,
    )


def problem(request: Request, status_code: int, found: str, expected: str, todo: str) -> Response:
    """A page that says what was found, what was expected and what to do."""
    viewer = viewer_of(request) if "session" in request.scope else None
    return page(request, "problem.html", viewer, status_code, found=found, expected=expected, todo=todo)


def school_year(given: str | None, default: str) -> str:
    """The school year asked for ("2025-2026"), or `default`; a malformed one is a 400 saying how to write it."""
    year = (given or default).strip()
    form = SCHOOL_YEAR.fullmatch(year)
    if form is None or int(form.group(2)) != int(form.group(1)) + 1:
        raise HTTPException(400, f"năm học '{year[:20]}'")
    return year


@dataclass(frozen=True)
class Posted:
    """A form the person signed in posted to a school's or a class's page, and the school year it names."""

    viewer: Viewer
    form: FormData
    school_code: str
    school_year: str


async def posted(request: Request) -> Posted | None:
    """The form posted to this school's page (or one of its classes'), checked; None when nobody is signed in."""
    viewer = viewer_of(request)
    if viewer is None:
        return None
    form = await checked_form(request)
    year = school_year(str(form.get("year", "")), gateway(request).config.school_year)
    return Posted(viewer, form, request.path_params["school"], year)


async def checked_form(request: Request) -> FormData:
    """The form posted, if it carries this session's token (a page of this gateway sent it); 403 otherwise."""
    form = await request.form()
    sent, kept = str(form.get(CSRF, "")), request.session.get(CSRF, "")
    if not kept or not secrets.compare_digest(sent, kept):
        raise HTTPException(403, "biểu mẫu")
    return form


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        return problem(
            request,
            400,
            f"Không đọc được {exc.detail}.",
            "Năm học viết bằng hai năm liền nhau, ví dụ 2025-2026.",
            "Sửa năm học trong ô chọn năm rồi xem lại.",
        )
    if exc.status_code == 403:
        return problem(
            request,
            403,
            f"Trang này không gửi được {exc.detail} (phiên đăng nhập đã đổi hoặc biểu mẫu đã cũ).",
            "Một biểu mẫu được gửi từ trang vừa tải của cổng này, trong phiên đăng nhập hiện tại.",
            "Tải lại trang rồi thao tác lại.",
        )
    return problem(
        request,
        exc.status_code,
        f"Không có trang {request.url.path}.",
        "Một địa chỉ trong các trang của cổng.",
        "Quay về trang chính.",
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return problem(
        request,
        500,
        "Cổng gặp lỗi không mong đợi khi xử lý yêu cầu này.",
        "Trang được hiển thị bình thường.",
        "Thử lại sau ít phút; nếu vẫn lỗi, báo cán bộ vận hành kèm thời điểm xảy ra (lỗi đã được ghi vào nhật ký).",
    )


def not_yours(request: Request, viewer: Viewer, what: str) -> Response:
    return problem(
        request,
        403,
        f"{viewer.name} ({viewer.role_name}) không được xem {what}.",
        "Mỗi người xem trường, lớp của mình; cán bộ vận hành Sở xem mọi trường.",
        "Quay về trang của mình, hoặc đăng nhập bằng tài khoản được phép.",
    )


# --- signing in ---------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    viewer = viewer_of(request)
    return to_sign_in() if viewer is None else RedirectResponse(viewer.home(), status_code=303)


async def sign_in_page(request: Request) -> Response:
    """The sign-in form for a sign-in token, and in development the choice among the enrolled staff."""
    g = gateway(request)
    viewer = viewer_of(request)
    request.session.setdefault(CSRF, secrets.token_urlsafe(24))
    schools = sign_in_choices(g.register()) if g.picker else []
    return page(request, "sign_in.html", viewer, schools=schools, picker=g.picker, tokens=g.sign_in is not None)


async def sign_in(request: Request) -> Response:
    """The development picker's sign-in: as an enrolled staff member, or the department's operator."""
    form = await checked_form(request)
    if not gateway(request).picker:
        return problem(
            request,
            404,
            "Cổng này không có danh sách chọn người đăng nhập: danh sách chỉ có trong môi trường phát triển.",
            "Đăng nhập bằng mã đăng nhập do hệ thống quản lý trường cấp.",
            "Dán mã đăng nhập vào ô trên trang đăng nhập.",
        )
    try:
        viewer = viewer_for(str(form.get("who", "")), gateway(request).register())
    except NotSignedIn:
        return problem(
            request,
            400,
            "Người được chọn không có trong danh sách cán bộ đã đăng ký.",
            "Một người trong danh sách đăng nhập.",
            "Tải lại trang đăng nhập rồi chọn lại; nếu thiếu người, cán bộ quản trị đăng ký họ (`hocba pki enrol`).",
        )
    request.session.clear()
    request.session.update({WHO: "operator" if viewer.is_operator else viewer.subject, CSRF: secrets.token_urlsafe(24)})
    return RedirectResponse(viewer.home(), status_code=303)


async def sign_in_with_token(request: Request) -> Response:
    """A sign-in token, pasted into the sign-in page or posted here by the school management system: the person it
    names is signed in as it names them, for as long as it lasts.

    The token is the credential, so no form token is asked for (the school management system's own page posts
    it). Posted from another site, the answer is a page that goes on to the person's home page: a cookie set by a
    cross-site post is sent only from the next same-site navigation (SameSite=Strict).
    """
    g = gateway(request)
    form = await request.form()
    token = str(form.get("token", "")).strip()
    if g.sign_in is None:
        return problem(
            request,
            503,
            "Cổng chưa được cấu hình để nhận mã đăng nhập (thiếu chứng thư riêng svc-web hoặc khoá công khai của hệ "
            "thống quản lý trường).",
            "Cổng có chứng thư svc-web của PKI và khoá công khai của hệ thống quản lý trường (HOCBA_ACTOR_ISSUER_JWKS).",
            "Báo cán bộ vận hành: chạy `hocba pki init` (hoặc `hocba pki export --service web`) rồi khởi động lại cổng.",
        )
    if not token or len(token) > SIGN_IN_TOKEN_LIMIT:
        return problem(
            request,
            400,
            "Không có mã đăng nhập." if not token else f"Mã đăng nhập dài {len(token)} ký tự, quá dài.",
            "Mã đăng nhập do hệ thống quản lý trường cấp: một chuỗi ba phần nối bằng dấu chấm.",
            "Lấy mã đăng nhập từ hệ thống quản lý trường, dán nguyên vào ô rồi bấm Đăng nhập.",
        )
    try:
        viewer = g.sign_in.viewer(token)
    except SignInEnded as exc:
        return problem(
            request,
            401,
            f"Mã đăng nhập này đã hết hạn{ended_at(exc)}.",
            "Một mã đăng nhập còn hạn.",
            "Lấy mã đăng nhập mới từ hệ thống quản lý trường rồi đăng nhập lại.",
        )
    except SignInRefused as exc:
        return problem(
            request,
            400,
            f"Mã đăng nhập không được chấp nhận ({exc}).",
            "Mã đăng nhập do hệ thống quản lý trường cấp cho cổng này, còn hạn, được dán nguyên vẹn.",
            "Lấy lại mã đăng nhập từ hệ thống quản lý trường, dán nguyên vào ô rồi bấm Đăng nhập.",
        )
    request.session.clear()
    request.session.update({WHO: viewer.subject, SIGN_IN: viewer.sign_in_token, CSRF: secrets.token_urlsafe(24)})
    if request.headers.get("sec-fetch-site") == "cross-site":
        return page(request, "sign_in.html", viewer, continue_to=viewer.home(), picker=False, tokens=True)
    return RedirectResponse(viewer.home(), status_code=303)


async def signed_out(request: Request, exc: Exception) -> Response:
    """A message to vouch for when the person's sign-in has just ended (or they were removed): back to sign in."""
    request.session.clear()
    if isinstance(exc, SignInEnded):
        request.session[NOTICE] = session_ended(exc)
    return to_sign_in()


async def sign_out(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return to_sign_in()


async def nothing_here(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    return problem(
        request,
        200,
        f"{viewer.role_name} không có việc ký nào trên trang này.",
        "Hiệu trưởng ký toàn trường, giáo viên chủ nhiệm ký lớp, cán bộ vận hành theo dõi các trường.",
        "Đăng xuất nếu cần đăng nhập bằng tài khoản khác.",
    )


# --- a school, a class, the term end across schools ---------------------------------------------


async def school_page(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    code = request.path_params["school"]
    if not viewer.may_see_school(code):
        return not_yours(request, viewer, f"trường {code}")
    g = gateway(request)
    year = school_year(request.query_params.get("year"), g.config.school_year)
    register = g.register()
    reviews, review_problem = await class_reviews(request, viewer, code, year)
    by_class = {c.class_name: c for c in reviews.classes} if reviews else {}
    listed, records_problem = await record_summary(request, viewer, code, year)
    counts = status.record_counts(listed) if listed is not None else None
    terms = status.terms_closed(listed)
    classes = sorted(set(status.classes_of(register, code)) | set(by_class) | set(counts or {}), key=status.class_order)
    return page(
        request,
        "school.html",
        viewer,
        school_code=code,
        school_name=register.schools.get(code, f"Trường {code}"),
        year=year,
        lines=[status.class_line(register, code, c, by_class.get(c), class_counts(counts, c), terms) for c in classes],
        totals=status.school_totals(listed, reviews),
        records_problem=records_problem,
        findings=[status.findings(c) for c in by_class.values() if c.incomplete or c.status != "reviewed"],
        review_problem=review_problem,
        batches=g.board.batches_of(code, year),
        may_sign=viewer.may_sign_school(code),
        since=g.board.since,
        state_names=status.STATE_NAMES,
    )


async def class_page(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    code, class_name = request.path_params["school"], request.path_params["class_name"]
    if not viewer.may_see_class(code, class_name):
        return not_yours(request, viewer, f"lớp {class_name} của trường {code}")
    g = gateway(request)
    year = school_year(request.query_params.get("year"), g.config.school_year)
    register = g.register()
    reviews, review_problem = await class_reviews(request, viewer, code, year, class_name)
    review = next((c for c in reviews.classes if c.class_name == class_name), None) if reviews else None
    listed, records_problem = await record_summary(request, viewer, code, year, class_name)
    counts = status.record_counts(listed) if listed is not None else None
    return page(
        request,
        "class.html",
        viewer,
        school_code=code,
        school_name=register.schools.get(code, f"Trường {code}"),
        class_name=class_name,
        year=year,
        line=status.class_line(
            register, code, class_name, review, class_counts(counts, class_name), status.terms_closed(listed)
        ),
        records_problem=records_problem,
        review=status.findings(review) if review else None,
        reviews_answered=reviews is not None,
        review_problem=review_problem,
        batches=g.board.batches_of(code, year, class_name),
        may_sign=viewer.may_sign_class(code, class_name),
        since=g.board.since,
        state_names=status.STATE_NAMES,
    )


async def operator_page(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    if not viewer.is_operator:
        return not_yours(request, viewer, "tình hình kết thúc năm học của các trường")
    g = gateway(request)
    year = school_year(request.query_params.get("year"), g.config.school_year)
    register = g.register()
    codes = sorted(set(register.schools) | {m.school_code for m in register.staff.values()})
    schools, records_problem = [], ""
    for code in codes:
        # A summary names no student: the page reads nobody's personal data, however many schools it counts.
        listed, why = (None, "") if records_problem else await record_summary(request, viewer, code, year)
        records_problem = records_problem or why  # a grades that did not answer is not asked again
        counted = set(status.record_counts(listed)) if listed is not None else set()
        latest = next((b for b in g.board.batches_of(code, year) if b.role == "principal"), None)
        schools.append(
            {
                "code": code,
                "name": register.schools.get(code, f"Trường {code}"),
                "classes": len(set(status.classes_of(register, code)) | counted),
                "totals": status.school_totals(listed),
                "click": latest,
            }
        )
    sync, sync_problem = await sync_status(request, viewer)
    return page(
        request,
        "operator.html",
        viewer,
        year=year,
        schools=schools,
        records_problem=records_problem,
        sync=sync,
        sync_problem=sync_problem,
        since=g.board.since,
        state_names=status.STATE_NAMES,
    )


async def class_reviews(
    request: Request, viewer: Viewer, school_code: str, year: str, class_name: str | None = None
) -> tuple[ClassReviews | None, str]:
    """Signing's review of the school's classes (or one class) as the viewer may ask for it, or why it could not
    be had. The operator does not review a school's classes: nothing is asked for them."""
    if viewer.is_operator:
        return None, ""
    g = gateway(request)
    question = ReviewClasses(school_code=school_code, school_year=year, class_name=class_name)
    try:
        return await g.link.ask(g.voucher.signs(viewer, question), ClassReviews, "school"), ""
    except Refused as exc:
        return None, f"Dịch vụ ký không trả lời phần rà soát ({exc.reason}): {exc}."
    except NoAnswer as exc:
        return None, f"Dịch vụ ký không trả lời phần rà soát ({exc}); kiểm tra hệ thống đang chạy (`hocba up`)."


def class_counts(counts: dict[str, status.RecordCounts] | None, class_name: str) -> status.RecordCounts | None:
    """A class's counts when grades answered (a class it listed no record of has none: zero, not "—")."""
    return None if counts is None else counts.get(class_name, status.RecordCounts())


async def record_summary(
    request: Request, viewer: Viewer, school_code: str, year: str, class_name: str | None = None
) -> tuple[RecordList | None, str]:
    """grades' summary of the school year's records (or one class's) as the viewer may ask for it: the records
    counted per class and the terms closed, or why it could not be had. A summary names no student, so a page
    load reads nobody's personal data (grades keeps nothing in its access log for it)."""
    g = gateway(request)
    question = ListRecords(school_code=school_code, school_year=year, class_name=class_name, summary=True)
    try:
        return await g.link.ask(g.voucher.signs(viewer, question), RecordList, "school"), ""
    except Refused as exc:
        return None, f"Dịch vụ điểm không trả lời danh sách hồ sơ ({exc.reason}): {exc}."
    except NoAnswer as exc:
        return (
            None,
            f"Dịch vụ điểm không trả lời danh sách hồ sơ ({exc}); kiểm tra hệ thống đang chạy (`hocba up`) rồi "
            "tải lại trang.",
        )


async def sync_status(request: Request, viewer: Viewer) -> tuple[SyncStatus | None, str]:
    """The ministry outbox as sync answers the operator, or why it could not be asked."""
    g = gateway(request)
    try:
        return await g.link.ask(g.voucher.signs(viewer, GetSyncStatus(parked_limit=20)), SyncStatus, "operator"), ""
    except Refused as exc:
        return None, f"Dịch vụ đồng bộ từ chối ({exc.reason}): {exc}."
    except NoAnswer as exc:
        return (
            None,
            f"Dịch vụ đồng bộ không trả lời ({exc}); kiểm tra hệ thống đang chạy (`hocba up`) rồi tải lại trang.",
        )


# --- signing --------------------------------------------------------------------------------------


async def sign_school(request: Request) -> Response:
    """The principal's one click: every record of the school year that awaits their signature, then the seal."""
    if (post := await posted(request)) is None:
        return to_sign_in()
    viewer, code, year = post.viewer, post.school_code, post.school_year
    if not viewer.may_sign_school(code):
        return problem(
            request,
            403,
            f"{viewer.name} ({viewer.role_name}) không ký được toàn trường {code}.",
            "Hiệu trưởng của trường ký toàn trường.",
            "Đăng nhập bằng tài khoản hiệu trưởng của trường.",
        )
    return await send_batch(request, viewer, RequestSignBatch(school_code=code, school_year=year, role="principal"))


async def sign_class(request: Request) -> Response:
    """The homeroom teacher signs their class's records."""
    if (post := await posted(request)) is None:
        return to_sign_in()
    viewer, code, year, class_name = post.viewer, post.school_code, post.school_year, request.path_params["class_name"]
    if not viewer.may_sign_class(code, class_name):
        return problem(
            request,
            403,
            f"{viewer.name} ({viewer.role_name}) không ký được lớp {class_name}.",
            "Giáo viên chủ nhiệm của lớp ký lớp mình.",
            "Đăng nhập bằng tài khoản giáo viên chủ nhiệm của lớp.",
        )
    command = RequestSignBatch(school_code=code, school_year=year, role="homeroom_teacher", class_name=class_name)
    return await send_batch(request, viewer, command)


async def confirm_review(request: Request) -> Response:
    """The homeroom teacher confirms the review of their class as the page showed it (its fingerprint)."""
    if (post := await posted(request)) is None:
        return to_sign_in()
    viewer, code, year, class_name = post.viewer, post.school_code, post.school_year, request.path_params["class_name"]
    if not viewer.may_sign_class(code, class_name):
        return problem(
            request,
            403,
            f"{viewer.name} ({viewer.role_name}) không xác nhận được rà soát lớp {class_name}.",
            "Giáo viên chủ nhiệm của lớp xác nhận rà soát lớp mình.",
            "Đăng nhập bằng tài khoản giáo viên chủ nhiệm của lớp.",
        )
    g = gateway(request)
    command = ConfirmReview(
        school_code=code, school_year=year, class_name=class_name, reviewed=str(post.form.get("reviewed", ""))[:64]
    )
    back = f"/schools/{code}/classes/{class_name}?year={year}"
    try:
        done = await g.link.ask(g.voucher.signs(viewer, command), ReviewConfirmed, "school")
    except Refused as exc:
        return problem(
            request,
            409,
            f"Dịch vụ ký không nhận xác nhận rà soát ({exc.reason}): {exc}.",
            "Lớp vẫn như lúc trang rà soát được hiển thị.",
            "Tải lại trang của lớp, xem lại phần rà soát rồi xác nhận lại.",
        )
    except NoAnswer as exc:
        return problem(
            request,
            503,
            f"Không gửi được xác nhận rà soát ({exc}).",
            "Hệ thống đang chạy (`hocba up`).",
            "Khi hệ thống đã chạy, tải lại trang của lớp rồi xác nhận lại.",
        )
    except NotSignedIn:
        request.session.clear()
        return to_sign_in()
    said = f"Đã xác nhận rà soát lớp {done.class_name}: {done.records} hồ sơ."
    if done.incomplete:
        said += f" {done.incomplete} hồ sơ chưa đầy đủ sẽ không được ký cho đến khi bổ sung."
    request.session[NOTICE] = said
    return RedirectResponse(back, status_code=303)


async def send_batch(request: Request, viewer: Viewer, command: RequestSignBatch) -> Response:
    """Send the request with the person's token for it, as `hocba sign` does, and show its progress page."""
    g = gateway(request)
    try:
        signed = g.voucher.signs(viewer, command)
    except NotSignedIn:
        request.session.clear()
        return to_sign_in()
    g.board.expect(signed, viewer.subject)
    try:
        await g.link.send(signed)
        outcome = "sent"
    except NoAnswer as exc:
        g.board.not_sent(signed.batch_id, str(exc))
        outcome = "unsent"
    g.metrics.clicks.labels(command.role, outcome).inc()
    return RedirectResponse(f"/batches/{signed.batch_id}", status_code=303)


def may_see_batch(viewer: Viewer, batch: BatchView) -> bool:
    if batch.class_name is not None:
        return viewer.may_see_class(batch.school_code, batch.class_name)
    return viewer.may_see_school(batch.school_code)


def found_batch(request: Request, viewer: Viewer) -> BatchView | Response:
    batch = gateway(request).board.batch(request.path_params["batch_id"])
    if batch is None:
        return problem(
            request,
            404,
            "Cổng không biết lượt ký này.",
            "Một lượt ký được gửi hoặc được thông báo từ lúc cổng khởi động.",
            "Mở trang của trường hoặc lớp để xem các lượt ký gần đây, hoặc bấm ký lại.",
        )
    if not may_see_batch(viewer, batch):
        return not_yours(request, viewer, "lượt ký này")
    return batch


async def batch_page(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    batch = found_batch(request, viewer)
    if isinstance(batch, Response):
        return batch
    back = (
        f"/schools/{batch.school_code}/classes/{batch.class_name}"
        if batch.class_name
        else f"/schools/{batch.school_code}"
    )
    return page(
        request,
        "batch.html",
        viewer,
        batch=batch,
        outcome=status.batch_outcome(batch),
        state_name=status.STATE_NAMES[batch.state],
        back=f"{back}?year={batch.school_year}",
    )


async def batch_progress(request: Request) -> Response:
    """The batch's progress for the page's polling: state, counts, and the outcome once it is over."""
    viewer = viewer_of(request)
    if viewer is None:
        return JSONResponse({"error": "chưa đăng nhập"}, status_code=401)
    batch = found_batch(request, viewer)
    if isinstance(batch, Response):
        return JSONResponse({"error": "không xem được lượt ký này"}, status_code=batch.status_code)
    return JSONResponse(
        {
            "state": batch.state,
            "state_name": status.STATE_NAMES[batch.state],
            "records_signed": batch.records_signed,
            "records_total": batch.records_total,
            "percent": batch.percent,
            "finished": batch.finished,
            "outcome": status.batch_outcome(batch),
        }
    )
