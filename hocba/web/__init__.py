"""The web gateway for the term end: a small server-rendered app (Starlette, Jinja2) beside the five services,
talking to them over the bus as the school tools and the operators' tools do.

* sign-in with the school management system's sign-in token (in development also a choice among the enrolled
  staff and the department's operator);
* a school's page (principal, records administrator): its classes and their status, and the principal's one
  click "Ký toàn trường" with the batch's live progress until every record is signed and sealed;
* a class's page (homeroom teacher): the class, and signing it;
* the operator's page: the term end across schools and the ministry outbox.

`build_app` (hocba.web.app) is the composition root; `python -m hocba.web` runs it (`hocba up` starts it).
"""

#: Where `hocba up` serves the web page (HOCBA_WEB_PORT).
WEB_PORT = 9190
