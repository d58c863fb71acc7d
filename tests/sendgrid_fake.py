"""A SendGrid stand-in on 127.0.0.1 that the real `sendgrid` client talks to.

Every request is checked against SendGrid's published OpenAPI contract (path, method, Bearer
auth, query parameters, JSON body) and against the rules the schema cannot express; a request
that breaks them fails the test that made it. Tests can queue faults, each for the next request
(to a path): any status with headers and a body (a 200 html page, say), a connection dropped
without an answer before the request is accepted, or after it was accepted and delivered, and a
slow answer (delivered, then answered after ``delay`` seconds: past the client's timeout).
``deliveries`` is the log of every copy SendGrid would have mailed.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACTS = [
    Path(__file__).parent / "sendgrid_contract" / name
    for name in (
        "sendgrid_v3_contract.json",
        "twilio_tsg_scheduled_sends_v3.json",
        "twilio_tsg_domain_authentication_v3.json",
        "twilio_tsg_scopes_v3.json",
        "twilio_tsg_tracking_settings_v3.json",
    )
]
BASE = "urn:sendgrid-contract"
API_KEY = "SG.test-key-for-the-loopback-server"


@dataclass
class Fault:
    status: int = 0  # 0 = drop the connection without answering
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    path: str | None = None  # only for requests whose path ends with this
    accept: bool = False  # accept (and deliver) the request first, then fail as above
    delay: float = 0.0  # seconds to wait before the answer (or the drop)
    raw: bytes | None = None  # the answer's body as it is, with content_type (not JSON)
    content_type: str = "application/json"


def accepted_then_dropped(path: str = "/mail/send") -> Fault:
    """SendGrid took the batch, and the connection broke before its 202 came back."""
    return Fault(0, path=path, accept=True)


def slow_answer(seconds: float, path: str = "/mail/send") -> Fault:
    """SendGrid took the batch, and its 202 comes after ``seconds`` (past the client's timeout)."""
    return Fault(202, path=path, accept=True, delay=seconds)


def html_page(status: int = 200, path: str = "/mail/send") -> Fault:
    """A proxy or a captive portal answering instead of SendGrid."""
    page = b"<!doctype html><title>Welcome</title><p>Please log in to use this network.</p>"
    return Fault(status, path=path, raw=page, content_type="text/html; charset=utf-8")


@dataclass
class Delivery:
    """One recipient's copy of an accepted request, substitutions applied."""

    email: str
    name: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    message_id: str
    custom_args: dict[str, str] = field(default_factory=dict)  # SendGrid puts them in every event
    batch_id: str | None = None  # a scheduled send's: cancelling it cancels this copy


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class Contract:
    """SendGrid's OpenAPI documents: each request must match an operation of one of them."""

    def __init__(self, *documents: dict[str, Any]):
        self.registry = Registry()
        self.routes = []
        for number, document in enumerate(documents):
            base = f"{BASE}-{number}"
            resource = Resource.from_contents(document, default_specification=DRAFT202012)
            self.registry = self.registry.with_resource(base, resource)
            for template, operations in document["paths"].items():
                pattern = re.sub(r"\{[^}]+\}", r"[^/]+", template)
                self.routes.append((re.compile(f"^{pattern}$"), template, operations, document, base))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any], dict[str, Any], str]:
        matches = [(t, ops, d, b) for rx, t, ops, d, b in self.routes if rx.match(path) and method.lower() in ops]
        if not matches:
            raise ContractViolation(f"{method} {path} is not in SendGrid's API")
        # a literal segment beats a template one ("/global" over "/{email}")
        template, ops, document, base = min(matches, key=lambda m: m[0].count("{"))
        return template, ops[method.lower()], document, base

    def validator(self, base: str, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{base}#{pointer}"}, registry=self.registry)

    def check(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any) -> None:
        template, op, document, base = self.operation(method, path)
        if not headers.get("authorization", "").startswith("Bearer "):
            raise ContractViolation("no Bearer authorization header")
        escaped = template.replace("~", "~0").replace("/", "~1")
        parameters = document.get("components", {}).get("parameters", {})
        for index, param in enumerate(op.get("parameters", [])):
            if "$ref" in param:
                name = param["$ref"].rsplit("/", 1)[-1]
                param = parameters[name]
                pointer = f"/components/parameters/{name}/schema"
            else:
                pointer = f"/paths/{escaped}/{method.lower()}/parameters/{index}/schema"
            if param.get("in") != "query" or param["name"] not in query:
                continue
            raw = query[param["name"]][0]
            value: Any = int(raw) if re.fullmatch(r"-?\d+", raw) else raw
            errors = list(self.validator(base, pointer).iter_errors(value))
            if errors:
                raise ContractViolation(f"query {param['name']}={raw}: {errors[0].message}")
        known = {p.get("name") for p in op.get("parameters", []) if "name" in p} | {
            parameters[p["$ref"].rsplit("/", 1)[-1]]["name"] for p in op.get("parameters", []) if "$ref" in p
        }
        unknown = set(query) - known
        if unknown:
            raise ContractViolation(f"unknown query parameters {sorted(unknown)}")
        request_body = op.get("requestBody")
        if request_body is None:
            if body is not None:
                raise ContractViolation("a body where the operation takes none")
            return
        if "$ref" in request_body:
            name = request_body["$ref"].rsplit("/", 1)[-1]
            pointer = f"/components/requestBodies/{name}/content/application~1json/schema"
        else:
            pointer = f"/paths/{escaped}/{method.lower()}/requestBody/content/application~1json/schema"
        errors = sorted(self.validator(base, pointer).iter_errors(body), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path)
            raise ContractViolation(f"body {where}: {errors[0].message}")


class ContractViolation(AssertionError):
    pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the kill -9 test) is expected, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeSendGrid:
    """State and script of the stand-in; ``url`` is what SENDGRID_API_HOST should be."""

    def __init__(self) -> None:
        self.contract = Contract(*(json.loads(path.read_text()) for path in CONTRACTS))
        self.lists: dict[str, list[dict[str, Any]]] = {
            "unsubscribes": [],
            "bounces": [],
            "spam_reports": [],
            "invalid_emails": [],
        }
        self.groups: dict[str, list[str]] = {}
        self.global_added: list[str] = []
        self.sandboxed: list[dict[str, Any]] = []  # requests in sandbox mode: validated, never delivered
        self.mail_batches: dict[str, str] = {}  # batch id -> "" (scheduled) or "cancel" / "pause"
        self.domains: list[dict[str, Any]] = []  # authenticated domains, as GET /v3/whitelabel/domains lists them
        self.scopes = ["mail.send", "suppression.read", "asm.groups.suppressions.read"]
        self.scopes += ["asm.suppressions.global.create", "mail.batch.create", "user.scheduled_sends.create"]
        self.tracking = {"click": {"enabled": True, "enable_text": False}, "open": {"enabled": True}}
        self.deliveries: list[Delivery] = []
        self.keep_content = True  # False: deliveries keep no subject/text/html (large lists)
        self.delay = 0.0  # seconds before answering a mail send
        self.batches = 0
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self.lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeSendGrid:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.path is None or path.endswith(fault.path):
                    return self.faults.pop(index)
        return None

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any, dict]:
        if method == "GET" and path.startswith("/v3/suppression/"):
            entries = self.lists[path.rsplit("/", 1)[-1]]
            limit = int(query.get("limit", ["500"])[0])
            offset = int(query.get("offset", ["0"])[0])
            return 200, entries[offset : offset + limit], {}
        group = re.fullmatch(r"/v3/asm/groups/([^/]+)/suppressions", path)
        if method == "GET" and group:
            return 200, self.groups.get(group.group(1), []), {}
        if method == "POST" and path == "/v3/mail/send":
            if body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"):
                with self.lock:
                    self.sandboxed.append(body)
                return 200, None, {}  # validated, delivered to nobody
            return self._accept_mail(body)
        if method == "POST" and path == "/v3/mail/batch":
            with self.lock:
                batch_id = f"batch{len(self.mail_batches) + 1}-AbCdEf"
                self.mail_batches[batch_id] = ""
            return 201, {"batch_id": batch_id}, {}
        if method == "POST" and path == "/v3/user/scheduled_sends":
            with self.lock:
                if self.mail_batches.get(body["batch_id"]) != "":
                    return 400, {"errors": [{"field": "batch_id", "message": "already has a status, or unknown"}]}, {}
                self.mail_batches[body["batch_id"]] = body["status"]
            return 201, body, {}
        if method == "GET" and path == "/v3/whitelabel/domains":
            return 200, self.domains, {}
        if method == "GET" and path == "/v3/scopes":
            return 200, {"scopes": self.scopes}, {}
        tracking = re.fullmatch(r"/v3/tracking_settings/(click|open)", path)
        if method == "GET" and tracking:
            return 200, self.tracking[tracking.group(1)], {}
        scheduled = re.fullmatch(r"/v3/user/scheduled_sends/([^/]+)", path)
        if method == "GET" and scheduled:
            status = self.mail_batches.get(scheduled.group(1))
            return 200, [{"batch_id": scheduled.group(1), "status": status}] if status else [], {}
        if method == "POST" and path == "/v3/asm/suppressions/global":
            with self.lock:
                self.global_added.extend(body["recipient_emails"])
            return 201, body, {}
        raise ContractViolation(f"the stand-in does not serve {method} {path}")

    def mailed(self) -> list[Delivery]:
        """The copies that reach people: not those of a scheduled send that was cancelled."""
        with self.lock:
            return [d for d in self.deliveries if not d.batch_id or self.mail_batches.get(d.batch_id) != "cancel"]

    def _accept_mail(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if body.get("batch_id") is not None and body["batch_id"] not in self.mail_batches:
            return 400, {"errors": [{"field": "batch_id", "message": "invalid batch id"}]}, {}
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.batches += 1
            message_id = f"msg-{self.batches}"
        contents = {c["type"]: c["value"] for c in body["content"]}
        found = []
        for entry in body["personalizations"]:
            subs = entry.get("substitutions", {})
            apply = (lambda text, subs=subs: _substitute(text, subs)) if self.keep_content else (lambda text: "")
            to = entry["to"][0]
            found.append(
                Delivery(
                    email=to["email"],
                    name=to.get("name", ""),
                    subject=apply(body["subject"]),
                    text=apply(contents.get("text/plain", "")),
                    html=apply(contents.get("text/html", "")),
                    headers={**body.get("headers", {}), **entry.get("headers", {})},
                    message_id=message_id,
                    custom_args={**body.get("custom_args", {}), **entry.get("custom_args", {})},
                    batch_id=body.get("batch_id"),
                )
            )
        with self.lock:
            self.deliveries.extend(found)
        return 202, None, {"X-Message-Id": message_id}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _respond(
                self,
                status: int,
                payload: Any = None,
                headers: dict[str, str] | None = None,
                raw: bytes | None = None,
                content_type: str = "application/json",
            ) -> None:
                data = raw if raw is not None else b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = parse_qs(parts.query)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake.lock:
                    fake.seen.append(Seen(self.command, parts.path, query, headers, body))
                try:
                    fake.contract.check(self.command, parts.path, query, headers, body)
                    if parts.path == "/v3/mail/send":
                        check_mail_rules(body)
                except ContractViolation as exc:
                    fake.violations.append(f"{self.command} {parts.path}: {exc}")
                    self._respond(400, {"errors": [{"message": str(exc), "field": None}]})
                    return
                if headers["authorization"] != f"Bearer {API_KEY}":
                    self._respond(401, {"errors": [{"message": "The provided authorization grant is invalid"}]})
                    return
                fault = fake._take_fault(parts.path)
                if fault is not None:
                    extra: dict[str, str] = {}
                    if fault.accept:
                        _, _, extra = fake.answer(self.command, parts.path, query, body)
                    if fault.delay:
                        time.sleep(fault.delay)
                    if fault.status == 0:  # drop the connection without an answer
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self._respond(fault.status, fault.body, {**extra, **fault.headers}, fault.raw, fault.content_type)
                    return
                status, payload, extra = fake.answer(self.command, parts.path, query, body)
                self._respond(status, payload, extra)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle

        return Handler


RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}
ASM_TAGS = ("<%asm_group_unsubscribe_raw_url%>", "<%asm_preferences_raw_url%>", "<%asm_global_unsubscribe_raw_url%>")


def check_mail_rules(body: dict[str, Any]) -> None:
    """SendGrid's mail-send rules that its schema cannot express (../shared/sendgrid/README.md)."""
    people = body["personalizations"]
    if len(people) > 1000:
        raise ContractViolation(f"{len(people)} personalizations (at most 1000)")
    addresses = [r["email"].lower() for p in people for kind in ("to", "cc", "bcc") for r in p.get(kind, [])]
    if len(addresses) > 1000:
        raise ContractViolation(f"{len(addresses)} recipients (at most 1000)")
    if len(addresses) != len(set(addresses)):
        raise ContractViolation("an address appears twice in one request")
    if len(json.dumps(body).encode()) >= 30 * 1024 * 1024:
        raise ContractViolation("request over 30 MB")
    for p in people:
        for r in p.get("to", []):
            if any(c in r.get("name", "") for c in ";,") or len(r["email"]) > 320:
                raise ContractViolation(f"bad recipient {r!r}")
            if any(c in r.get("name", "") for c in "\r\n"):
                raise ContractViolation(f"line break in a recipient name {r!r}")
        subs = p.get("substitutions", {})
        if not all(isinstance(v, str) for v in subs.values()):
            raise ContractViolation("substitution values must be strings")
        if sum(len(k.encode()) + len(v.encode()) for k, v in subs.items()) > 10_000:
            raise ContractViolation("substitutions over 10,000 bytes in one personalization")
        for name in p.get("headers", {}):
            if name.lower() in RESERVED_HEADERS:
                raise ContractViolation(f"reserved header {name}")
    custom = body.get("custom_args", {})
    if not all(isinstance(v, str) and v for v in custom.values()):
        raise ContractViolation("custom_args values must be non-empty strings")
    categories = body.get("categories", [])
    if len(categories) > 10 or len(set(categories)) != len(categories) or not all(c.isascii() for c in categories):
        raise ContractViolation(f"bad categories {categories!r}")
    if "send_at" in body and not time.time() - 60 <= body["send_at"] <= time.time() + 72 * 3600:
        raise ContractViolation("send_at more than 72 hours ahead")
    types = [c["type"] for c in body["content"]]
    if "text/html" in types and "text/plain" in types and types.index("text/plain") > types.index("text/html"):
        raise ContractViolation("text/plain must come before text/html")
    text = json.dumps(body)
    if any(tag in text for tag in ASM_TAGS) and "asm" not in body:
        raise ContractViolation("SendGrid unsubscribe tags without an asm group")


def _substitute(text: str, substitutions: dict[str, str]) -> str:
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def rate_limited(seconds_from_now: float = 0.0, path: str | None = None) -> Fault:
    reset = int(time.time() + seconds_from_now)
    headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    return Fault(429, headers, {"errors": [{"message": "too many requests"}]}, path)


def authenticated_domain(domain: str, subdomain: str = "em1234", valid: bool = True, number: int = 1) -> dict[str, Any]:
    """An entry of GET /v3/whitelabel/domains, as SendGrid lists a domain it authenticated."""

    def record(host: str, data: str) -> dict[str, Any]:
        return {"valid": valid, "type": "cname", "host": host, "data": data}

    return {
        "id": number,
        "user_id": 7,
        "subdomain": subdomain,
        "domain": domain,
        "username": "clinic",
        "ips": [],
        "custom_spf": False,
        "default": True,
        "legacy": False,
        "automatic_security": True,
        "valid": valid,
        "dns": {
            "mail_cname": record(f"{subdomain}.{domain}", f"u7.wl{number}.sendgrid.net"),
            "dkim1": record(f"s1._domainkey.{domain}", f"s1.domainkey.u7.wl{number}.sendgrid.net"),
            "dkim2": record(f"s2._domainkey.{domain}", f"s2.domainkey.u7.wl{number}.sendgrid.net"),
        },
    }
