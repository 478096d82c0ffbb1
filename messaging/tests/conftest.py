"""Fixtures of the messaging tests: templates, connectors, a local HTTP sink."""

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integrations.signing import generate_secret, sign_headers
from messaging.models import ChannelConnector
from messaging.services import message_schedule, template_create
from programs.actors import Actor

SYSTEM = Actor.system("test")


@pytest.fixture
def templates(program):
    """invitation (sms + email), welcome (sms, complete_on sent), reminder (sms)."""
    made = {}
    for key, channel, body, complete_on in (
        ("invitation", "sms", "Join the {{ program_name }}: {{ link_join }}", "delivered"),
        ("invitation", "email", "Join the {{ program_name }} by {{ due_date }}", "delivered"),
        ("welcome", "sms", "Welcome to the {{ program_name }}", "sent"),
        (
            "invitation_reminder",
            "sms",
            "Reminder: {{ step_title }} due {{ due_date }}",
            "delivered",
        ),
    ):
        made[(key, channel)] = template_create(
            program=program,
            key=key,
            channel=channel,
            body=body,
            links={"join": "https://app.example.org/join"} if "link_join" in body else {},
            complete_on=complete_on,
            actor=SYSTEM,
            publish=True,
        )
    return made


@pytest.fixture
def schedule(org, program, templates):
    """schedule(**overrides) -> (message, created) with sensible defaults."""
    counter = iter(range(1, 10_000))

    def _schedule(**kwargs):
        n = next(counter)
        params = {
            "organization": org,
            "program": program,
            "enrollment_id": 1000 + n,
            "participant_ref": f"P-{n:04d}",
            "participant_timezone": "UTC",
            "locale": "en",
            "template_key": "invitation",
            "channel": "sms",
            "step_instance_id": 5000 + n,
            "step_title": "Invitation message",
            "actor": SYSTEM,
        }
        params.update(kwargs)
        return message_schedule(**params)

    return _schedule


class Sink:
    """A recording HTTP server on 127.0.0.1; `status` and `reply` set the answer."""

    def __init__(self):
        self.requests = []
        self.status = 202
        self.reply = {"vendor_message_id": "vendor-1"}
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with sink.lock:
                    sink.requests.append({"headers": dict(self.headers), "body": body})
                payload = json.dumps(sink.reply).encode()
                self.send_response(sink.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.request_queue_size = 128  # many concurrent senders
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/messages"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():
    server = Sink()
    yield server
    server.close()


@pytest.fixture
def webhook_connector(org, sink, settings):
    settings.BATON_ALLOW_INSECURE_WEBHOOKS = True
    return ChannelConnector.objects.create(
        organization=org,
        slug="tool",
        name="Customer messaging tool",
        kind="webhook",
        url=sink.url,
        secret=generate_secret(),
        is_default=True,
    )


def signed(connector, payload, *, msg_id="cb_1", timestamp=None, secret=None):
    """(body bytes, headers) of a vendor callback signed with the connector's secret."""
    body = json.dumps(payload).encode()
    headers = sign_headers(
        secrets=[secret or connector.secret],
        msg_id=msg_id,
        timestamp=timestamp or datetime.now(tz=UTC),
        body=body,
    )
    return body, headers


def post_callback(client, connector, payload, **kwargs):
    body, headers = signed(connector, payload, **kwargs)
    return client.post(
        f"/api/v1/messaging/callbacks/{connector.pk}/",
        data=body,
        content_type="application/json",
        headers=headers,
    )
