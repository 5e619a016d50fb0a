"""A console to type SMTP by hand, like ``telnet mail.anotherdomain.org 25``.

The learner types a line, presses Enter (or clicks Send) and sees the real server's answer,
mistakes included: ``503`` for a command out of order (RCPT before MAIL, RFC 5321 §4.1.4),
``501`` for bad arguments (``MAIL FROM:<bad``), ``500`` for an unknown command (Postfix,
as RFC 5321 §4.2.4 says) and for a line the server cannot parse (an empty line, a non-ASCII
character), each with
:meth:`~simsmtp.protocol.replies.Reply.explain` and the states of both sides::

    console = ui.Console(net, "mail.anotherdomain.org", 25)
    console                       # Connect, then type: EHLO mail.example.com …
    console.send("RCPT TO:<bob@anotherdomain.org>")   # the same from code: a Step

Lines go through :meth:`SMTPStepper.line <simsmtp.net.stepper.SMTPStepper.line>`, so the
client core does not check them: what the learner types is what the server gets. One
exception: ``STARTTLS`` runs the TLS handshake after the ``220`` (a real telnet cannot, the
way ``openssl s_client -starttls smtp`` can). After ``DATA`` and its ``354`` each line is
message content and gets no reply until the line ``.`` (RFC 5321 §4.1.1.4).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from simsmtp.world import cast

from .base import View, html_widget
from .stepper import conversation_html, explanation_html, tight
from .style import COLORS, callout, escape

if TYPE_CHECKING:
    from simsmtp.net.network import Network
    from simsmtp.net.stepper import SMTPStepper, Step

#: Templates the quick buttons put in the input box (the learner edits, then sends).
#: ``{sender}``, ``{recipient}`` and ``{user}`` are the world's own (Alice, Bob in the seed).
COMMAND_TEMPLATES: list[tuple[str, str]] = [
    ("EHLO", "EHLO {local_name}"),
    ("MAIL FROM", "MAIL FROM:<{sender}>"),
    ("RCPT TO", "RCPT TO:<{recipient}>"),
    ("DATA", "DATA"),
    ("RSET", "RSET"),
    ("NOOP", "NOOP"),
    ("VRFY", "VRFY {user}"),
    ("HELP", "HELP"),
    ("QUIT", "QUIT"),
]
#: ... and inside DATA (after 354): message lines.
CONTENT_TEMPLATES: list[tuple[str, str]] = [
    ("Subject:", "Subject: Typed by hand"),
    ("(empty line)", ""),
    ("Hello", "Hello {name}, this message was typed line by line."),
    ("“.” (end)", "."),
]


def _template_names(world: Any, host: str) -> dict[str, str]:
    """The world's own names for the quick buttons: a sender, a recipient ``host`` keeps
    mail for, that recipient's user name and name (Alice and Bob at the seed's MX)."""
    try:
        sender = cast.sender(world)
    except cast.MissingPart:
        sender = "someone@example.org"
    try:
        recipient = cast.recipient_at(world, host, sender)
    except cast.MissingPart:
        recipient = "someone@example.org"
    return {"sender": sender, "recipient": recipient,
            "user": recipient.rpartition("@")[0], "name": cast.display_name(world, recipient)}


class Console(View):
    """Type SMTP commands to a real server of the world and see its answers.

    Args:
        net: the running world.
        host: the server to talk to (default: the MX of the world's first recipient,
            :func:`simsmtp.world.cast.receiving_host`; ``mail.anotherdomain.org`` in the
            seed).
        port: its well-known port (25, 587; 465 starts with TLS).
        local_name: who we are (the default name in the EHLO template); when it is a
            world host, the connection comes from that host's address (default: the
            world's first outbound host, ``mail.example.com`` in the seed).
        timeout: seconds to wait for a reply.

    Controls a test (or a learner) can drive: ``connect_button``, ``input`` (set
    ``value``), ``send_button``, ``quick_buttons``; ``transcript.value`` and
    ``status.value`` show what the learner sees.
    """

    def __init__(self, net: Network, host: str | None = None, port: int = 25,
                 *, local_name: str | None = None, timeout: float = 5.0) -> None:
        import ipywidgets as w

        from simsmtp.net.stepper import _default_local_name

        world = net.world
        self.net = net
        self.host = host = world.host(host).name if host else cast.receiving_host(world)
        self.port = port
        self.local_name = local_name = local_name or _default_local_name(world)
        self._fill = _template_names(world, host)
        self.timeout = timeout
        self.session: SMTPStepper | None = None
        #: The steps of the current connection.
        self.steps: list[Step] = []
        #: Every step of every connection of this console (for exercises).
        self.all_steps: list[Step] = []
        self.connections = 0
        self.error = ""

        self.connect_button = w.Button(description="Connect", button_style="primary",
                                       tooltip=f"open a TCP connection to {host} port {port}",
                                       layout=w.Layout(width="110px"))
        self.connect_button.on_click(self.guarded(lambda _: self.connect()))
        self.input = w.Text(placeholder=f"type a command, e.g. EHLO {local_name}, and "
                                        "press Enter", layout=w.Layout(width="60%"))
        self.input.add_class("simsmtp-console-input")
        with warnings.catch_warnings():  # Enter: the Text widget's submit event
            warnings.simplefilter("ignore", DeprecationWarning)
            self.input.on_submit(self.guarded(lambda _: self.send_input()))
        self.send_button = w.Button(description="Send", tooltip="send the line (CRLF added)",
                                    layout=w.Layout(width="80px"))
        self.send_button.on_click(self.guarded(lambda _: self.send_input()))
        self.quick_buttons = [self._quick(label, line) for label, line in COMMAND_TEMPLATES]
        self.content_buttons = [self._quick(label, line) for label, line in CONTENT_TEMPLATES]
        self.quick_row = w.HBox(self.quick_buttons, layout=w.Layout(flex_flow="row wrap"))
        self.status = html_widget()
        self.transcript = html_widget()
        self.transcript.add_class("simsmtp-console-transcript")
        self.meaning = html_widget()
        self.widget = w.VBox([
            w.HBox([self.connect_button, self.status], layout=w.Layout(align_items="center")),
            self.transcript,
            w.HBox([self.input, self.send_button]),
            w.HBox([html_widget(f"<span style='color:{COLORS['muted']};font-size:12px;'>"
                           "fill in:</span>"), self.quick_row],
                   layout=w.Layout(align_items="center")),
            self.meaning,
        ])
        self.widget.add_class("simsmtp-console")
        self._render()

    def _quick(self, label: str, line: str) -> Any:
        import ipywidgets as w

        tip = line.format(local_name="{local_name}", **self._fill)
        button = w.Button(description=label, tooltip=tip or "an empty line",
                          layout=w.Layout(width="auto"))
        button.on_click(self.guarded(lambda _: self.fill(
            line.format(local_name=self.local_name, **self._fill))))
        return button

    # -------------------------------------------------------------- actions
    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self.session is not None and not self.session.closed

    def connect(self) -> Step | None:
        """Open a new connection (closing the old one): the greeting step."""
        self.error = ""
        if self.session is not None:
            self.session.close()
        self.session = self.net.session(self.host, self.port, local_name=self.local_name,
                                        timeout=self.timeout)
        self.steps = []
        step = None
        try:
            step = self.session.connect()
        except Exception as exc:  # a host taken down, the world stopped …
            self.error = f"{type(exc).__name__}: {exc}"
            self.session = None
        else:
            self.connections += 1
            self._record(step)
        self._render()
        return step

    def fill(self, line: str) -> None:
        """Put ``line`` in the input box (what the quick buttons do)."""
        self.input.value = line

    def send_input(self) -> Step | None:
        """Send what is in the input box (Enter, or the Send button), then clear it."""
        line = self.input.value
        self.input.value = ""
        return self.send(line)

    def send(self, line: str) -> Step | None:
        """Send one typed line (connecting first if needed); the step, or None on error."""
        self.error = ""
        if not self.connected and self.connect() is None:
            return None
        assert self.session is not None
        step = None
        try:
            if line.strip().upper() == "STARTTLS" and self.session.state.name != "MESSAGE":
                step = self.session.starttls()  # the handshake too (a telnet cannot)
            else:
                step = self.session.line(line)
        except Exception as exc:  # a bare CR/LF, a timeout, a closed connection
            self.error = f"{type(exc).__name__}: {exc}"
        else:
            self._record(step)
        self._render()
        return step

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        self.all_steps.append(step)

    # -------------------------------------------------------------- drawing
    def transcript_text(self) -> str:
        """The conversation of the current connection, as plain text."""
        return "\n".join(str(step) for step in self.steps)

    def _render(self) -> None:
        connected = self.connected
        self.connect_button.description = "Reset" if connected else \
            ("Connect again" if self.steps else "Connect")
        self.connect_button.tooltip = ("close this connection and open a new one" if connected
                                       else f"open a TCP connection to {self.host} port "
                                            f"{self.port}")
        self.input.disabled = self.send_button.disabled = not connected
        for button in self.quick_buttons + self.content_buttons:
            button.disabled = not connected
        in_content = connected and self.session is not None and \
            self.session.state.name == "MESSAGE"
        wanted = self.content_buttons if in_content else self.quick_buttons
        if list(self.quick_row.children) != wanted:
            self.quick_row.children = tuple(wanted)
        where = f"{escape(self.host)} port {self.port}"
        if connected and self.session is not None:
            server = self.session.server_state
            tls = f" · <b style='color:{COLORS['tls']};'>TLS</b>" \
                if self.session.tls_active else ""
            state = (f"client <b>{self.session.state.name}</b>, server "
                     f"<b>{server.name if server is not None else '?'}</b>")
            self.status.value = f"<span style='margin-left:8px;'>connected to {where} as " \
                                f"{escape(self.local_name)}{tls} · {state}</span>"
        elif self.steps:
            self.status.value = (f"<span style='margin-left:8px;color:{COLORS['muted']};'>"
                                 f"connection to {where} closed: click <b>Connect again</b>"
                                 "</span>")
        else:
            self.status.value = (f"<span style='margin-left:8px;'>not connected: click "
                                 f"<b>Connect</b> to reach {where}</span>")
        self.transcript.value = conversation_html(self.steps, len(self.steps) - 1,
                                                  height="18em")
        parts = []
        if self.error:
            parts.append(callout("fail", escape(self.error), "Not sent:"))
        if self.steps:
            last = self.steps[-1]
            if in_content:
                parts.append(callout("note", "You are writing the message now: every line is "
                                     "content, with no reply, until a line holding only "
                                     "<code>.</code> (RFC 5321 §4.1.1.4). Headers first, then "
                                     "an empty line, then the body.", "Inside DATA"))
            parts.append(explanation_html(last))
        self.meaning.value = tight("".join(parts))

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"Console({self.host} port {self.port}, {state})"


__all__ = ["COMMAND_TEMPLATES", "CONTENT_TEMPLATES", "Console"]
