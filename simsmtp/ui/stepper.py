"""Step through a real SMTP session, forward and backward, one command at a time.

:class:`Stepper` shows, for each step of a session: the bytes the client sent and the
server's reply (in swaks notation, the whole conversation so far with the current step
highlighted), what the reply code means (:meth:`~simsmtp.protocol.replies.Reply.explain`),
the states of the client and of the server before and after, and the state diagram of
:mod:`simsmtp.ui.states` (drawn from the cores' transition table) with the current state
highlighted and the transition just taken in orange::

    session = net.session("mail.anotherdomain.org", 25)       # we play mail.example.com
    steps = ui.seed_dialogue(session, seed_message(world))     # the seed, really sent
    ui.Stepper(steps)                                         # Back / Next through it

    ui.Stepper(net.session(...), script=ui.seed_script(message))   # or live: each Next
                                                                    # sends one command

Steps come from :class:`~simsmtp.net.stepper.SMTPStepper` (the widget never talks SMTP
itself). A recorded list can be walked after the world has stopped; a live stepper runs
the next command of its ``script`` when Next is clicked at the end of what was recorded
(Back never "un-sends" anything: it shows what happened before).

:func:`capability_table` says what each EHLO keyword means (RFC 5321 §2.2.1: a server
lists its service extensions in the EHLO reply).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from simsmtp.world import cast
from simsmtp.world.scenario import SEED_RECIPIENT, SEED_SENDER

from .base import View, html_widget
from .exercises import AnswerError, Exercise, choice, register, text
from .style import COLORS, HTMLText, Raw, callout, code_color, escape, html_table, text_table

if TYPE_CHECKING:
    from simsmtp.net.stepper import SMTPStepper, Step

#: One action of a live script: a raw line to type, or a call on the session.
Action = str | Callable[["SMTPStepper"], Any]

#: What each EHLO keyword means (RFC 5321 §2.2.1: extensions are announced in the EHLO
#: reply), with the RFC that defines it.
CAPABILITIES: dict[str, tuple[str, str]] = {
    "PIPELINING": ("RFC 2920", "the client may send MAIL, RCPT… and DATA in one go, without "
                   "waiting for each reply (the replies come back in the same order)"),
    "SIZE": ("RFC 1870", "the largest message the server takes, in octets; a client "
             "declares its size in MAIL FROM (SIZE=…) and is refused before sending it"),
    "VRFY": ("RFC 5321 §3.5", "the client may ask whether a mailbox exists (VRFY "
             "bob@anotherdomain.org): Postfix answers 252 if it does and 550 if not, which "
             "helps spammers collect addresses, so sites may switch it off (Postfix "
             "disable_vrfy_command, RFC 5321 §7.3)"),
    "ETRN": ("RFC 1985", "a server that was offline may ask this one to send now the mail "
             "queued for its domain (ETRN anotherdomain.org)"),
    "STARTTLS": ("RFC 3207", "the client may switch this connection to TLS (encrypted) "
                 "with the STARTTLS command"),
    "ENHANCEDSTATUSCODES": ("RFC 2034", "replies carry an enhanced status code such as "
                            "2.1.0 or 5.1.1 (RFC 3463) after the reply code"),
    "8BITMIME": ("RFC 6152", "the message may contain 8-bit bytes (MAIL FROM:<…> "
                 "BODY=8BITMIME); plain SMTP is 7-bit ASCII"),
    "DSN": ("RFC 3461", "delivery status notifications: the sender may ask to be told of "
            "success, failure or delay (RCPT TO:<…> NOTIFY=SUCCESS,FAILURE)"),
    "CHUNKING": ("RFC 3030", "the BDAT command: the message may be sent in chunks of a "
                 "stated size instead of DATA … <CRLF>.<CRLF>"),
    "AUTH": ("RFC 4954", "the client may log in (the mechanisms follow: PLAIN, LOGIN …)"),
    "SMTPUTF8": ("RFC 6531", "addresses and headers may be UTF-8 (jürgen@example.de)"),
    "BINARYMIME": ("RFC 3030", "the message may be binary (only with BDAT)"),
    "REQUIRETLS": ("RFC 8689", "the sender may demand TLS for this message on every hop"),
    "DELIVERBY": ("RFC 2852", "the sender may set a delivery deadline"),
}

#: Drawn state diagrams: (role, state, previous, verb) -> (PNG, caption).
_DIAGRAMS: dict[tuple[str, str, str, str | None], tuple[bytes, str]] = {}

#: The table's verb for a step label that is not a plain verb (session.transitions names).
_VERBS = {"<greeting>": "", "<message>": "<end-of-data>"}


# ------------------------------------------------------------------------------ pure helpers

def tight(html: str) -> Raw:
    """``html`` at a reading line height, for an ipywidgets ``HTML`` widget (whose own
    line height of 28 px is made for one-line labels)."""
    return Raw(f'<div style="line-height:1.45;">{html}</div>')


def step_verb(step: Step) -> str:
    """The transition-table verb of a step: ``EHLO``, ``MAIL``, ``<end-of-data>`` …"""
    if step.label in _VERBS:
        return _VERBS[step.label]
    words = step.label.split()
    verb = words[0].upper() if words else ""
    if verb == "STARTTLS" and step.tls_version:
        return "<handshake>"
    if verb == "AUTH" and step.code is not None and 300 <= step.code < 400:
        return "AUTH (3xx)"
    return verb


def _state_name(state: Any) -> str:
    return "—" if state is None else str(getattr(state, "name", state))


def step_lines(step: Step) -> list[str]:
    """The step in swaks notation, one line per element (``str(step)`` split)."""
    return str(step).splitlines()


def line_color(line: str) -> str:
    """The colour of a swaks line: client blue, replies by code, notes grey."""
    if line.startswith((" -> ", " ~> ")):
        return COLORS["client"]
    if line.startswith("==="):
        return COLORS["muted"]
    reply = line[4:]
    return code_color(int(reply[:3])) if reply[:3].isdigit() else COLORS["server"]


def conversation_html(steps: Sequence[Step], current: int | None = None, *,
                      height: str = "24em", min_height: str = "6em") -> Raw:
    """The conversation in swaks notation, coloured, the ``current`` step highlighted.

    The box keeps its bottom in view (the newest line), as a terminal does.
    """
    rows = []
    for index, step in enumerate(steps):
        now = index == current
        back = f"background:{COLORS['highlight']}55;" if now else ""
        for line in step_lines(step) or ["(nothing crossed the wire)"]:
            weight = "font-weight:bold;" if now else ""
            rows.append(f'<div style="color:{line_color(line)};{back}{weight}'
                        f'white-space:pre;">{escape(line) or "&nbsp;"}</div>')
    if not rows:
        rows.append(f'<div style="color:{COLORS["muted"]};">(not connected yet)</div>')
    # column-reverse keeps the scroll position at the bottom: new lines stay in view
    return Raw(f'<div style="display:flex;flex-direction:column-reverse;max-height:{height};'
               f'min-height:{min_height};overflow:auto;border:1px solid #DDDDDD;'
               f'border-radius:4px;background:#FFFFFF;padding:4px 8px;font-family:monospace;'
               f'font-size:12px;line-height:1.4;">'
               f'<div>{"".join(rows)}</div></div>')


def explanation_html(step: Step) -> Raw:
    """The explanation of a step's reply, one sentence per line, coloured by its class."""
    text_ = step.explanation
    if step.code is not None and text_.startswith(f"{step.code}: "):
        text_ = text_[len(f"{step.code}: "):]  # the title says the code
    sentences = re.split(r"(?<=\.) (?=[A-Z])", text_)
    body = "<br>".join(escape(s) for s in sentences)
    kind = "note" if step.code is None else "ok" if step.code < 400 else \
        "warn" if step.code < 500 else "fail"
    title = f"What {step.code} means:" if step.code is not None else "No reply:"
    return callout(kind, body, title)


def states_html(step: Step) -> Raw:
    """A small table: the client's and the server's state before and after the step."""
    def cell(before: Any, after: Any) -> Raw:
        b, a = _state_name(before), _state_name(after)
        if b == a:
            return Raw(f"{escape(a)} <span style='color:{COLORS['muted']};'>(unchanged)</span>")
        return Raw(f"{escape(b)} → <b style='background:{COLORS['highlight']};'>"
                   f"{escape(a)}</b>")

    return html_table(["side", "state before → after"],
                      [["client (us)", cell(step.client_state_before, step.client_state_after)],
                       ["server", cell(step.server_state_before, step.server_state_after)]])


def _extensions(source: Any) -> dict[str, str]:
    if isinstance(source, Mapping):
        return {str(k).upper(): str(v) for k, v in source.items()}
    if hasattr(source, "extensions") and not hasattr(source, "replies"):
        return dict(source.extensions)  # an SMTPStepper
    replies = getattr(source, "replies", None)
    if replies:  # an EHLO Step: the lines after the first are the keywords
        out: dict[str, str] = {}
        for line in replies[-1].lines[1:]:
            keyword, _, params = line.partition(" ")
            out[keyword.upper()] = params
        return out
    raise TypeError("give an EHLO Step, an SMTPStepper, or a dict of extensions")


def capability_table(source: Any, *, compact: bool = False) -> HTMLText:
    """What each keyword of an EHLO reply means, with its RFC.

    Args:
        source: an EHLO :class:`~simsmtp.net.stepper.Step`, an
            :class:`~simsmtp.net.stepper.SMTPStepper` (its last EHLO), or a dict
            keyword -> parameters.
        compact: two columns in HTML (the RFC under the keyword), for a narrow pane.
    """
    rows = []
    for keyword, params in _extensions(source).items():
        rfc, meaning = CAPABILITIES.get(keyword, ("", "(not described here)"))
        rows.append([f"{keyword} {params}".strip(), rfc, meaning])
    headers = ["keyword", "defined in", "what it tells the client"]
    if compact:
        narrow = [[Raw(f"<code>{escape(k)}</code><br><span style='color:{COLORS['muted']};"
                       f"font-size:11px;'>{escape(r)}</span>"), m] for k, r, m in rows]
        html = html_table(["keyword", "what it tells the client"], narrow)
    else:
        html = html_table(headers, rows, mono_columns=[0])
    return HTMLText(html, text_table(headers, rows))


def sent_summary(step: Step) -> str:
    """What the client sent in one line: the command, or a summary of the message."""
    if step.label == "<greeting>":
        return "(connects; the server speaks first)"
    if step.label == "<message>":
        lines = step.sent.count(b"\r\n") - 1
        return f"(the message: {lines} lines, then “.”)"
    first = step.sent.decode("utf-8", "replace").split("\r\n")[0]
    return first if step.sent else step.label


def reply_summary(step: Step) -> str:
    """The main reply's first line (``…`` when it has more), or what happened instead."""
    reply = step.reply
    if reply is None:
        return "(no reply: message content)" if step.client_state_after.name == "MESSAGE" \
            else "(no reply)"
    lines = str(reply).splitlines()
    return lines[0] + (f" (+{len(lines) - 1} lines)" if len(lines) > 1 else "")


def steps_table(steps: Sequence[Step]) -> HTMLText:
    """The steps of a session as a table: what was sent, the reply, both states after."""
    headers = ["#", "client sent", "server replied", "client state", "server state"]
    rows: list[list[object]] = []
    for number, step in enumerate(steps, 1):
        code = step.code
        reply = reply_summary(step)
        shown: object = reply if code is None else \
            Raw(f"<span style='color:{code_color(code)};'>{escape(reply)}</span>")
        rows.append([number, sent_summary(step), shown, _state_name(step.client_state_after),
                     _state_name(step.server_state_after)])
    plain = [[r[0], r[1], reply_summary(s), r[3], r[4]] for r, s in zip(rows, steps,
                                                                        strict=True)]
    return HTMLText(html_table(headers, rows, mono_columns=[1, 2]), text_table(headers, plain))


# ------------------------------------------------------------------------------ scripts

def seed_script(message: str | bytes, *, sender: str | None = None,
                recipients: str | Iterable[str] | None = None,
                tls: bool = False) -> list[Action]:
    """The seed dialogue as a script for a live :class:`Stepper`, one action per step.

    Greeting, EHLO, (STARTTLS and EHLO again with ``tls``), MAIL FROM, RCPT TO per
    recipient, DATA, the message, QUIT: RFC 5321 §3.3 (a mail transaction).

    Without ``sender`` and ``recipients`` they come from the session's world when the
    script runs: its first sender, and a user whose mail the session's server keeps
    (``alice@example.com`` and ``bob@anotherdomain.org`` in the seed, and for a session
    to a raw address).
    """
    script: list[Action] = [lambda s: s.connect(), lambda s: s.ehlo()]
    if tls:
        script += [lambda s: s.starttls(), lambda s: s.ehlo()]
    script.append(lambda s: s.mail(sender or _sender(s)))
    if recipients is None:
        script.append(lambda s: s.rcpt(_recipient(s, sender or _sender(s))))
    else:
        rcpts = [recipients] if isinstance(recipients, str) else list(recipients)
        script += [_rcpt(r) for r in rcpts]
    script += [lambda s: s.data(), lambda s: s.message(message), lambda s: s.quit()]
    return script


def _sender(session: SMTPStepper) -> str:
    """The world's first sender (the seed's Alice for a session without a world)."""
    world = getattr(session, "world", None)
    return SEED_SENDER if world is None else cast.sender(world)


def _recipient(session: SMTPStepper, sender: str) -> str:
    """A user whose mail the session's server keeps (the seed's Bob without a world)."""
    world = getattr(session, "world", None)
    if world is None or session.host_name is None:
        return SEED_RECIPIENT
    return cast.recipient_at(world, session.host_name, sender, arg="recipients")


def _rcpt(address: str) -> Action:
    return lambda s: s.rcpt(address)


def run_script(session: SMTPStepper, script: Iterable[Action]) -> list[Step]:
    """Run every action of ``script`` on ``session``; the steps, in order."""
    steps: list[Step] = []
    for action in script:
        steps += _as_steps(_run_action(session, action))
    return steps


def seed_dialogue(session: SMTPStepper, message: str | bytes, **kw: Any) -> list[Step]:
    """Play the seed dialogue on ``session`` now (really) and return its steps.

    ``kw`` go to :func:`seed_script` (sender, recipients, tls). Without ``sender`` and
    ``recipients``, they come from the session's world: its first sender, and a user whose
    mail the session's server keeps (Alice and Bob in the seed).
    """
    return run_script(session, seed_script(message, **kw))


def _run_action(session: SMTPStepper, action: Action) -> Any:
    if isinstance(action, str):
        return session.line(action)
    return action(session)


def _as_steps(result: Any) -> list[Step]:
    if result is None:
        return []
    if isinstance(result, list | tuple):
        return list(result)
    return [result]


# ------------------------------------------------------------------------------ the widget

class Stepper(View):
    """Walk forward and backward through a real SMTP session.

    Args:
        source: the recorded steps (a list of :class:`~simsmtp.net.stepper.Step`), or a
            live :class:`~simsmtp.net.stepper.SMTPStepper` (its history so far is where
            the walk starts).
        script: with a live session, the actions Next runs one by one once the walk is
            at the end of what was recorded: raw lines (``"RCPT TO:<x@y>"``) or calls
            (``lambda s: s.mail("a@b")``), e.g. :func:`seed_script`.
        role: whose state diagram to show first, ``"server"`` or ``"client"``.
        title: a line above the widget.
        diagram: draw the state diagram (False: the states as text only).

    ``next_button.click()`` and ``back_button.click()`` do what the buttons do;
    ``wire.value`` is the conversation shown, ``meaning.value`` the explanation.
    """

    def __init__(self, source: SMTPStepper | Sequence[Step], script: Iterable[Action] = (),
                 *, role: str = "server", title: str | None = None,
                 diagram: bool = True) -> None:
        import ipywidgets as w

        if isinstance(source, Sequence):
            self.session: SMTPStepper | None = None
            self.steps: list[Step] = list(source)
        else:
            self.session = source
            self.steps = source.history
        self.script: list[Action] = list(script)
        self.position = 0 if self.steps else -1
        self.error = ""

        self.back_button = w.Button(description="◀ Back", tooltip="the step before",
                                    layout=w.Layout(width="90px"))
        self.next_button = w.Button(description="Next ▶", button_style="primary",
                                    tooltip="the next step", layout=w.Layout(width="90px"))
        self.back_button.add_class("simsmtp-stepper-back")
        self.next_button.add_class("simsmtp-stepper-next")
        self.back_button.on_click(self.guarded(lambda _: self.back()))
        self.next_button.on_click(self.guarded(lambda _: self.forward()))
        self.header = html_widget()
        self.wire = html_widget(layout=w.Layout(width="56%"))
        self.wire.add_class("simsmtp-stepper-wire")
        self.meaning = html_widget(layout=w.Layout(width="44%", padding="0 0 0 10px"))
        self.role_toggle = w.ToggleButtons(options=["server", "client"], value=role,
                                           style={"button_width": "70px"},
                                           tooltips=["the server's states",
                                                     "the client's states"])
        self.role_toggle.observe(self.guarded(lambda _: self._draw_diagram()), "value")
        self.diagram = None
        parts: list[Any] = []
        if title:
            parts.append(html_widget(f"<b>{escape(title)}</b>"))
        parts += [w.HBox([self.back_button, self.next_button, self.header],
                         layout=w.Layout(align_items="center")),
                  w.HBox([self.wire, self.meaning], layout=w.Layout(align_items="flex-start"))]
        if diagram:
            from .states import StateMachineView

            self.diagram = StateMachineView(role)
            parts += [w.HBox([html_widget("<b>State diagram of the</b>&nbsp;"), self.role_toggle],
                             layout=w.Layout(align_items="center", margin="8px 0 0 0")),
                      self.diagram.widget]
        self.widget = w.VBox(parts)
        self.widget.add_class("simsmtp-stepper")
        self._render()

    # -------------------------------------------------------------- moving
    @property
    def current(self) -> Step | None:
        """The step shown now (None before the first)."""
        return self.steps[self.position] if 0 <= self.position < len(self.steps) else None

    @property
    def live(self) -> bool:
        """True when Next can still run a scripted command on the live session."""
        return self.session is not None and bool(self.script) and not (
            self.steps and self.session.closed)

    def forward(self) -> Step | None:
        """Show the next step (running the next scripted command when live)."""
        self.error = ""
        if self.position + 1 < len(self.steps):
            self.position += 1
        elif self.live:
            assert self.session is not None
            action = self.script.pop(0)
            try:
                fresh = _as_steps(_run_action(self.session, action))
            except Exception as exc:  # shown in the widget, never a traceback in a log
                self.error = f"{type(exc).__name__}: {exc}"
                fresh = []
            if fresh:
                self.position = len(self.steps)
                self.steps += fresh
        self._render()
        return self.current

    def back(self) -> Step | None:
        """Show the step before (nothing is un-sent: this is the record)."""
        self.error = ""
        if self.position > 0:
            self.position -= 1
        self._render()
        return self.current

    def go(self, index: int) -> Step | None:
        """Show step ``index`` (0 is the first; negative counts from the end)."""
        if self.steps:
            self.position = index % len(self.steps)
        self._render()
        return self.current

    # -------------------------------------------------------------- drawing
    def wire_text(self) -> str:
        """The conversation up to the current step, as plain text (what the pane shows)."""
        return "\n".join(line for step in self.steps[:self.position + 1]
                         for line in step_lines(step))

    def _render(self) -> None:
        step = self.current
        total = len(self.steps)
        more = " (+ live)" if self.live else ""
        self.back_button.disabled = self.position <= 0
        self.next_button.disabled = self.position + 1 >= total and not self.live
        if step is None:
            self.header.value = ("<span style='margin-left:8px;'>Not started: click "
                                 "<b>Next</b> to connect.</span>")
            self.meaning.value = ""
        else:
            self.header.value = (f"<span style='margin-left:8px;'><b>Step {self.position + 1} "
                                 f"of {total}{more}:</b> <code>{escape(step.label)}</code>"
                                 "</span>")
            sent = step.sent.decode("utf-8", "replace").split("\r\n")[0]
            if step.label == "<message>":
                lines = step.sent.count(b"\r\n")
                sent = f"the message ({lines - 1} lines), then the line “.”"
            said = (f"<div><b>Client sent:</b> <code>{escape(sent)}</code></div>" if sent
                    else "<div><b>Client sent:</b> nothing (the server speaks first, "
                         "RFC 5321 §4.3.1)</div>")
            reply = step.reply
            answer = (f"<div><b>Server replied:</b> <code style='color:"
                      f"{code_color(reply.code)};'>{escape(str(reply).splitlines()[0])}"
                      f"{' …' if len(reply.lines) > 1 else ''}</code></div>" if reply
                      else "<div><b>Server replied:</b> nothing</div>")
            extra = ""
            if step_verb(step) == "EHLO" and step.code == 250:
                extra = ("<div style='margin-top:4px;'><b>What the server offers</b> "
                         "(RFC 5321 §2.2.1):</div>"
                         + capability_table(step, compact=True).html)
            self.meaning.value = tight(said + answer + explanation_html(step)
                                       + states_html(step) + extra)
        if self.error:
            self.meaning.value = tight(callout("fail", escape(self.error),
                                               "That step failed:") + self.meaning.value)
        self.wire.value = conversation_html(self.steps[:self.position + 1], self.position,
                                            height="30em", min_height="16em")
        self._draw_diagram()

    def _draw_diagram(self) -> None:
        if self.diagram is None:
            return
        role = self.role_toggle.value
        if self.diagram.role != role:
            self.diagram.role = role
        step = self.current
        if step is None:
            self.diagram.show(None)
            return
        before: Any = step.server_state_before if role == "server" else \
            step.client_state_before
        after: Any = step.server_state_after if role == "server" else step.client_state_after
        previous = before if before != after else None
        verb = step_verb(step) or None
        key = (role, _state_name(after), _state_name(previous), verb)
        cached = _DIAGRAMS.get(key)
        if cached is None:
            self.diagram.show(after, previous=previous, verb=verb)
            if len(_DIAGRAMS) < 256:
                _DIAGRAMS[key] = (self.diagram.image.value, self.diagram.caption.value)
        else:  # the same picture as before: no need to draw it again
            self.diagram.current = _state_name(after)
            self.diagram.image.value, self.diagram.caption.value = cached

    def __repr__(self) -> str:
        step = self.current
        where = "not started" if step is None else \
            f"step {self.position + 1} of {len(self.steps)}: {step.label}"
        return f"Stepper({where})"


# ------------------------------------------------------------------------------ exercises

register(Exercise(
    "02.pipelining", "Without waiting",
    "Which EHLO keyword tells the client that it may send MAIL FROM, RCPT TO and DATA in "
    "one go, without waiting for each reply?",
    text(["PIPELINING", "250-PIPELINING"],
         {"CHUNKING": "CHUNKING is about sending the message in pieces (BDAT), "
                      "not about the commands.",
          "8BITMIME": "8BITMIME is about the bytes of the message.",
          "STARTTLS": "STARTTLS switches the connection to TLS.",
          "ENHANCEDSTATUSCODES": "ENHANCEDSTATUSCODES adds the x.y.z codes to the replies.",
          "SIZE": "SIZE announces the largest message the server takes.",
          "DSN": "DSN lets the client ask for delivery status notifications.",
          "ETRN": "ETRN asks the server to flush its queue for a domain.",
          "VRFY": "VRFY asks about an address; it says nothing about sending in one go."},
         "PIPELINING (RFC 2920): the replies then come back in the order of the commands."),
    hint="Look at the table of capabilities in the stepper's EHLO step.",
    solution="PIPELINING (RFC 2920 §3.1). The client still waits for the 354 after DATA "
             "before it sends the message.",
    answer_help='Write a keyword in quotes instead of None (e.g. answer = "DSN") and run the '
    'cell.'))

register(Exercise(
    "02.state-after-data", "Where the server is",
    "The server has just answered DATA with 354. In which state is the server now "
    "(a name from the state diagram)?",
    text(["DATA", "ServerState.DATA"],
         {"RCPT": "RCPT is where it was before DATA: the 354 moved it on.",
          "MAIL": "MAIL was two commands ago.",
          "GREETED": "It returns to GREETED only after the final <CRLF>.<CRLF> and "
                     "its 250.",
          "MESSAGE": "MESSAGE is the CLIENT's state after the 354 (the table shows both "
                     "sides): the client now sends the message. The question asks for the "
                     "server's state, which this server core calls DATA.",
          "ClientState.MESSAGE": "That is the client's state (it now sends the message); "
                                 "the question asks for the server's, DATA.",
          "354": "354 is the reply code; the question asks for a state name."},
         "DATA: from now on every line is message content, until a line holding only '.' "
         "(RFC 5321 §4.1.1.4)."),
    hint="Step to the DATA step in the stepper and read the server's state after it.",
    solution="DATA. Everything the client sends now is the message, until the line '.'; "
             "then the 250 brings the server back to GREETED, ready for the next MAIL.",
    answer_help='Write a state name in quotes instead of None (e.g. answer = "MAIL") and run '
    'the cell.'))


def _delivered_by_hand(answer: Any) -> tuple[bool, str]:
    steps = getattr(answer, "all_steps", None)
    if steps is None:
        raise AnswerError("this check looks at the console: give it the console, "
                          "check(console)")
    typed = [s for s in steps if s.label != "<greeting>"]
    if not typed:
        return False, "The console has not sent anything yet: click Connect and type."
    done = [s for s in typed if s.label == "." and s.code == 250]
    if done:
        queued = str(done[-1].reply).split("queued as ")[-1]
        return True, f"Delivered by hand: Bob's server queued it as {queued}. You just " \
                     "did what every mail server does, one line at a time."
    if any(s.code == 354 for s in typed):
        return False, "DATA was accepted, but the message is not finished: end it with a " \
                      "line holding only '.'."
    return False, "No message delivered by this console yet: EHLO, MAIL FROM, RCPT TO, " \
                  "DATA, then the message lines and a line holding only '.'."


register(Exercise(
    "02.by-hand", "Deliver a message by hand",
    "Use the console above to deliver a message to bob@anotherdomain.org, typing every "
    "command yourself (greeting, EHLO, MAIL FROM, RCPT TO, DATA, the message, '.'); then "
    "check with the console.",
    _delivered_by_hand,
    hint="EHLO mail.example.com, MAIL FROM:<alice@example.com>, "
         "RCPT TO:<bob@anotherdomain.org>, DATA, then e.g. 'Subject: hi', an empty line, "
         "'Hello Bob', and a line with only '.'.",
    solution="EHLO mail.example.com\nMAIL FROM:<alice@example.com>\n"
             "RCPT TO:<bob@anotherdomain.org>\nDATA\nSubject: by hand\n\nHello Bob!\n.\nQUIT",
    answer_help="Run the check cell below after your session in the console."))

register(Exercise(
    "02.bounce-to", "Who gets the bounce?",
    "The message with From: The Queen of Hearts <queen@example.com> was sent with "
    "MAIL FROM:<alice@example.com>. If Bob's server could not deliver it, to which "
    "address would the bounce go? (a) queen@example.com, the From: header; "
    "(b) alice@example.com, the envelope sender; (c) bob@anotherdomain.org.",
    choice("b", {"a": "The From: header is for people; servers do not route by it. "
                      "Bounces follow the envelope.",
                 "c": "Bob is the recipient it could not be delivered to."},
           "The envelope sender (the reverse-path, RFC 5321 §4.5.5 and §6.1) gets every "
           "bounce; that is why it is also called the return path."),
    hint="Which of the two addresses did the servers see in their SMTP conversation?",
    solution="(b) alice@example.com: bounces go to the envelope sender, the MAIL FROM "
             "address (RFC 5321 §6.1). Mailing lists use this to get bounces to a robot "
             "instead of the author.",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the '
    'cell.'))


__all__ = ["CAPABILITIES", "Stepper", "capability_table", "conversation_html",
           "explanation_html", "line_color", "reply_summary", "run_script", "seed_dialogue",
           "seed_script", "sent_summary", "states_html", "step_lines", "step_verb",
           "steps_table"]
