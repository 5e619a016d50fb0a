"""Exercises with immediate feedback: a check says right or wrong and gives a hint.

In a notebook, each answer cell names its exercise, so cells run in any order::

    ui.exercise("03.first-retry")                  # the question; hint and solution folded
    ui.exercise("03.first-retry").check(answer)    # ✔ right, or ✘ not quite + a hint

Some checks look at the running world rather than at a typed answer
(``ui.exercise("01.prefer-backup").check(net)``): the learner *does* something (edits MX
records, adds a fault rule, sends a message) and the check reads the world and its trace to
see whether it happened.

The solutions are folded in an HTML ``<details>`` element (click to open), so a learner
sees them only when asking. Exercise keys are ``"<notebook number>.<name>"``;
:func:`exercises_for` lists a notebook's. The notebooks of later chapters add theirs to
:data:`EXERCISES` with :func:`register` (or in this module).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .style import COLORS, callout, escape

#: What a checker returns: right or not, and what to say.
Verdict = tuple[bool, str]


class AnswerError(ValueError):
    """An answer of the wrong form; its message tells the learner, in plain words, how
    to write one (``"write a number, like 3"``). Checkers raise it; :meth:`Exercise.check`
    shows it as feedback."""


@dataclass(frozen=True)
class Feedback:
    """The result of a check: shown green (right), red (not quite) or grey (no answer)."""

    correct: bool
    message: str
    hint: str = ""
    answered: bool = True
    #: The exercise this feedback is about (its key), named in what the learner sees.
    key: str = ""

    def __bool__(self) -> bool:
        return self.correct

    @property
    def head(self) -> str:
        """``"✔ Right!"``, ``"✘ Not quite."`` or ``"… No answer yet."``."""
        if self.correct:
            return "✔ Right!"
        return "✘ Not quite." if self.answered else "… No answer yet."

    def _title(self) -> str:
        return f"{self.head} (exercise {self.key})" if self.key else self.head

    def _repr_html_(self) -> str:
        if self.correct:
            return callout("ok", escape(self.message), self._title())
        hint = f"<br><b>Hint:</b> {escape(self.hint)}" if self.hint else ""
        kind = "fail" if self.answered else "note"
        return callout(kind, escape(self.message) + hint, self._title())

    def __repr__(self) -> str:
        hint = f"\nHint: {self.hint}" if self.hint and not self.correct else ""
        return f"{self._title()} {self.message}{hint}"


@dataclass(frozen=True)
class Exercise:
    """One exercise.

    Attributes:
        key: ``"<notebook>.<name>"``, e.g. ``"03.first-retry"``.
        title: a few words.
        question: what to do or answer (plain text).
        checker: ``answer -> (right?, message)``; it may raise for a malformed answer.
        hint: shown after a wrong answer, and folded under the question.
        solution: the answer and why (plain text; folded).
        answer_help: how to give the answer (shown under the question).
    """

    key: str
    title: str
    question: str
    checker: Callable[[Any], Verdict] = field(repr=False)
    hint: str = ""
    solution: str = ""
    answer_help: str = "Write your answer instead of None (answer = ...) and run the cell."

    def check(self, answer: Any = None) -> Feedback:
        """Check ``answer``: right or not, with a hint when not (``None``: no answer yet)."""
        if answer is None or answer is Ellipsis:
            return Feedback(False, self.answer_help, answered=False, key=self.key)
        try:
            correct, message = self.checker(answer)
        except AnswerError as exc:  # the wrong form of answer: say how to write one
            return Feedback(False, f"{exc}.", key=self.key)
        except Exception:  # anything else: plain words, never Python's own text
            return Feedback(False, f"{answer!r} is not the kind of answer this exercise "
                            f"takes. {self.answer_help}", key=self.key)
        return Feedback(correct, message, "" if correct else self.hint, key=self.key)

    __call__ = check

    def _repr_html_(self) -> str:
        fold = ("<details style='margin:4px 0;'><summary style='cursor:pointer;color:"
                f"{COLORS['client']};'>{{}}</summary><div style='padding:4px 12px;'>{{}}"
                "</div></details>")
        body = [f"<div>{escape(self.question)}</div>",
                f"<div style='color:{COLORS['muted']};font-size:12px;margin-top:4px;'>"
                f"{escape(self.answer_help)}</div>"]
        if self.hint:
            body.append(fold.format("Hint", escape(self.hint)))
        if self.solution:
            body.append(fold.format("Solution (try first!)",
                                    f"<pre style='white-space:pre-wrap;margin:0;'>"
                                    f"{escape(self.solution)}</pre>"))
        return callout("note", "".join(body), f"Exercise {self.key}: {self.title}")

    def __repr__(self) -> str:
        return (f"Exercise {self.key}: {self.title}\n{self.question}\n{self.answer_help}\n"
                "(Hint and solution are folded below the question in JupyterLab.)")


#: Every exercise of the course, by key.
EXERCISES: dict[str, Exercise] = {}


#: Key -> the module that registered it (the course's own: ``simsmtp.…``).
_ORIGINS: dict[str, str] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to :data:`EXERCISES` and return it.

    Registering a key again from a notebook (a cell run twice, an instructor's edited
    exercise) replaces the earlier one. The course's own exercises cannot be replaced:
    a key one of them uses is refused, so choose another (e.g. ``"lab.spoof"``).
    """
    import sys

    caller = str(sys._getframe(1).f_globals.get("__name__", ""))
    origin = _ORIGINS.get(exercise.key)
    if origin is not None and origin.startswith("simsmtp."):
        raise ValueError(f"exercise {exercise.key!r} is already registered (one of the "
                         "course's exercises): choose another key")
    EXERCISES[exercise.key] = exercise
    _ORIGINS[exercise.key] = caller
    return exercise


def _load_all() -> None:
    """Import every widget family: some register their notebook's exercises themselves."""
    import importlib

    from simsmtp import ui

    for module in sorted(set(ui._EXPORTS.values())):
        importlib.import_module(f"simsmtp.ui.{module}")


def exercise(key: str) -> Exercise:
    """The exercise with this key (``KeyError`` lists the keys of its notebook)."""
    if key not in EXERCISES:
        _load_all()
    try:
        return EXERCISES[key]
    except KeyError:
        near = [k for k in EXERCISES if k.split(".")[0] == key.split(".")[0]]
        raise KeyError(f"no exercise {key!r}; this notebook has {', '.join(near) or 'none'}"
                       ) from None


def exercises_for(notebook: str) -> list[Exercise]:
    """The exercises of a notebook (``"03"``), in order."""
    _load_all()
    prefix = notebook.zfill(2) + "."
    return [e for k, e in EXERCISES.items() if k.startswith(prefix)]


# -- answer checkers ----------------------------------------------------------------------

def _text(answer: Any) -> str:
    return " ".join(str(answer).split()).strip().strip("<>").rstrip("./").lower()


def _number(answer: Any) -> float:
    """``587``, ``"587"``, ``"port 587"``, ``"300 s"`` -> the one number in the answer."""
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        return float(answer)
    found = re.findall(r"[-+]?\d+(?:\.\d+)?", answer) if isinstance(answer, str) else []
    if len(found) > 1:
        raise AnswerError(f"{answer!r} is more than one number: write one number, like 3")
    if not found:
        raise AnswerError(f"{answer!r} is not a number: write a number, like 3")
    return float(found[0])


def number(expected: float, wrong: dict[float, str] | None = None,
           right: str = "") -> Callable[[Any], Verdict]:
    """A checker for a number (also written with words around it: ``"port 587"``);
    ``wrong`` maps tempting wrong answers to an explanation."""
    def check(answer: Any) -> Verdict:
        value = _number(answer)
        if value == expected:
            return True, right
        return False, (wrong or {}).get(value, f"{answer} is not it.")
    return check


def text(expected: str | Iterable[str], wrong: dict[str, str] | None = None,
         right: str = "") -> Callable[[Any], Verdict]:
    """A checker for a word or a name (case and surrounding spaces do not matter)."""
    accepted = {_text(expected)} if isinstance(expected, str) else {_text(e) for e in expected}
    wrongs = {_text(k): v for k, v in (wrong or {}).items()}

    def check(answer: Any) -> Verdict:
        given = _text(answer)
        if given in accepted:
            return True, right
        return False, wrongs.get(given, f"{answer!r} is not it.")
    return check


def choice(correct: str, explanations: dict[str, str],
           right: str = "") -> Callable[[Any], Verdict]:
    """A checker for a multiple-choice letter; ``explanations`` say why a letter is wrong.

    An answer that is none of the letters is told every letter (the right one too, so the
    list gives nothing away)."""
    letters = sorted({correct, *explanations})
    listed = ", ".join(f'"{letter}"' for letter in letters[:-1]) + f' or "{letters[-1]}"'

    def check(answer: Any) -> Verdict:
        given = _text(answer).strip("()")
        letter = re.fullmatch(r"\(?([a-z])\)?(?:[ .:)-].*)?", given)  # "(b) keep it…", "b."
        if letter is not None:
            given = letter.group(1)
        if given == correct:
            return True, right
        if given not in explanations:
            raise AnswerError(f"{answer!r} is none of the choices: answer with one letter, "
                              f"{listed}")
        return False, explanations[given]
    return check


def sequence(expected: list[str], right: str = "") -> Callable[[Any], Verdict]:
    """A checker for an ordered list of names (a list, or one string separated by commas,
    spaces or arrows); a host name may be given by its first label (``mx-a``)."""
    full = [_text(e) for e in expected]
    short = {f.split(".")[0]: f for f in full}

    def check(answer: Any) -> Verdict:
        if isinstance(answer, str):
            items = re.split(r"[,\s>]+|->", answer)
        elif isinstance(answer, list | tuple):
            items = list(answer)
        else:
            raise AnswerError(f"{answer!r} is not a list: write the names in a list, "
                              'like ["a.example", "b.example"]')
        given = [_text(i) for i in items if _text(i).strip("-")]
        if len(short) == len(full):  # first labels are unambiguous: accept them
            given = [short.get(g, g) for g in given]
        if given == full:
            return True, right
        if sorted(given) == sorted(_text(e) for e in expected):
            return False, "The right names, but not in the right order."
        return False, f"Expected {len(expected)} names, in the order they are tried."
    return check


def _world(answer: Any) -> Any:
    """Accept the world or the running network for a check of the world's state."""
    from simsmtp.world.model import World

    if isinstance(answer, World):
        return answer
    world = getattr(answer, "world", None)
    if isinstance(world, World):
        return world
    raise AnswerError("this check looks at the world: give it the running world, "
                      "check(world) or check(net)")


# -- the exercises of each notebook ------------------------------------------------------

register(Exercise(
    "00.submission-port", "The first port",
    "Alice's mail program handed her message to mail.example.com. "
    "On which port (the well-known number) did it connect?",
    number(587, {25: "25 is where servers deliver to each other (relay); a mail program "
                     "submits on its own port.",
                 465: "465 is submission with TLS from the first byte (IANA name "
                      "'submissions', RFC 8314 §7.3); Alice's program said STARTTLS on a "
                      "plaintext connection first.",
                 110: "110 is POP3: Bob's program fetches mail there, nobody sends on it.",
                 53: "53 is the DNS: mail.example.com asked it where Bob's mail goes."},
           "587 is the submission port (RFC 6409): mail programs submit there, after "
           "STARTTLS and AUTH."),
    hint="Look at the first arrow of the diagram: 'connect to port …'.",
    solution="587, the submission port (RFC 6409 §3.1). Servers talk to each other on 25; "
             "465 ('submissions') is submission over TLS from the start (RFC 8314 §3.3, "
             "§7.3).",
    answer_help="Write a number instead of None (e.g. answer = 110) and run the cell."))

register(Exercise(
    "00.dns-questions", "Asking the way",
    "How many questions did mail.example.com ask the DNS before it could connect to "
    "Bob's server?",
    number(2, {1: "It asked which server takes anotherdomain.org's mail (MX)… and then it "
                  "still needed that server's address. (The MX answer's ADDITIONAL section "
                  "carried the address too, but MTAs do not trust additional data: they ask "
                  "again.)",
               0: "Look again: the pink arrows go to the DNS lane.",
               3: "With IPv6 an MTA also asks AAAA? mail.anotherdomain.org (Postfix does with "
                  "inet_protocols = all): 3 questions. This world's agent speaks IPv4 only: "
                  "count the pink arrows."},
           "MX? anotherdomain.org (which server takes the mail), then A? "
           "mail.anotherdomain.org (where that server is). An IPv6-capable MTA would also "
           "ask AAAA?."),
    hint="Count the pink arrows from mail.example.com to the DNS lane.",
    solution="2: MX? anotherdomain.org answered 'MX 10 mail.anotherdomain.org', then "
             "A? mail.anotherdomain.org answered its address (RFC 5321 §5.1). The address in "
             "the MX answer's ADDITIONAL section is not used: MTAs look it up themselves. "
             "With IPv6 there is a third question, AAAA?.",
    answer_help="Write a number instead of None (e.g. answer = 7) and run the cell."))

register(Exercise(
    "00.who-stored", "Into the mailbox",
    "Which host wrote the message into Bob's mailbox?",
    text("mail.anotherdomain.org",
         {"mail.example.com": "mail.example.com only relayed it: it is Alice's provider, "
                              "not Bob's.",
          "bob": "Bob's mail program only fetched it later, with POP3.",
          "bob@anotherdomain.org": "That is the mailbox; the question asks which host wrote "
                                   "into it.",
          "ns.simsmtp.test": "The name server only answered questions; it never sees the "
                             "message.",
          "alice": "Alice's program only submitted it to mail.example.com."},
         "mail.anotherdomain.org, the MX of Bob's domain. Its 250 meant 'I am responsible "
         "for it now' (RFC 5321 §6.1); in this world it writes the mailbox at once, while a "
         "real MTA puts the message in its queue at the 250 and a delivery agent (an MDA, "
         "e.g. Postfix's virtual, or Dovecot over LMTP) writes the mailbox just after."),
    hint="Look for the note 'stored in bob@anotherdomain.org's mailbox' and its lane.",
    solution="mail.anotherdomain.org: the server the MX record names. It took "
             "responsibility with its 250 (RFC 5321 §6.1) and its delivery agent (the MDA "
             "role; here the same program) wrote the message into Bob's Maildir, from "
             "which Bob's program (his MUA) fetched it with POP3.",
    answer_help='Write a host name in quotes instead of None (e.g. answer = "ns.simsmtp.test") '
    'and run the cell.'))

register(Exercise(
    "01.order", "Which one first?",
    "A domain publishes three MX records: MX 20 mx-b.example.net, MX 10 mx-a.example.net "
    "and MX 30 mx-c.example.net. In which order does a sender try them?",
    sequence(["mx-a.example.net", "mx-b.example.net", "mx-c.example.net"],
             "Lowest preference first: 10, 20, 30 (RFC 5321 §5.1). The order in the DNS "
             "answer does not matter."),
    hint="The preference is a cost: the lower it is, the sooner the server is tried.",
    solution='["mx-a.example.net", "mx-b.example.net", "mx-c.example.net"]: preferences '
             "10, 20, 30, lowest first (RFC 5321 §5.1).",
    answer_help='Write a list of names instead of None (e.g. answer = ["x.example.net", '
    '"y.example.net"]) and run the cell.'))


def _prefer_backup(answer: Any) -> Verdict:
    from .mx import sender_route

    net = answer if hasattr(answer, "resolver") else None
    if net is None:
        raise AnswerError("this check looks at the world: give it the running network, "
                          "check(net)")
    plan = sender_route(net, "anotherdomain.org")
    if plan.route.kind != "deliver" or not plan.order:
        return False, f"Senders would not deliver at all now ({plan.route.status}): " \
                      f"{plan.route.reason}"
    if plan.order[0] != "backup.anotherdomain.org":
        return False, f"Senders try {plan.order[0]} first. backup.anotherdomain.org must " \
                      "have the lowest preference of all (and resolve)."
    return True, "Senders now try backup.anotherdomain.org first: the DNS says so, and " \
                 "plan_route agrees."


register(Exercise(
    "01.prefer-backup", "Change the plan",
    "Make backup.anotherdomain.org the server senders try first: use the MX editor above "
    "(or change world.domains['anotherdomain.org'].mx), then run the check with the "
    "running network.",
    _prefer_backup,
    hint="Give backup.anotherdomain.org a lower preference than mail.anotherdomain.org "
         "(e.g. 5), or remove the other record.",
    solution="In the editor: click 'Add backup' (it adds backup.anotherdomain.org) "
             "and set its preference to 5. Or in code:\n"
             "world.domains['anotherdomain.org'].mx = [MXRecord(5, "
             "'backup.anotherdomain.org'), MXRecord(10, 'mail.anotherdomain.org')]",
    answer_help="Run the check cell below after your change; the check asks the DNS itself."))

register(Exercise(
    "01.null-mx", "Mail not welcome",
    "A domain publishes a null MX (MX 0 .). Which enhanced status code does a sender put "
    "in the bounce it sends back, without even trying?",
    text(["5.1.10", "556 5.1.10", "x.1.10"],
         {"5.4.4": "5.4.4 is for a domain with neither MX nor address: nothing "
                   "to try. A null MX says more: 'this domain takes no mail'.",
          "5.1.1": "5.1.1 is 'no such user': a server must have been asked.",
          "556": "556 is the reply code (RFC 7504); the question asks for the enhanced "
                 "status code (x.y.z).",
          "5.7.27": "5.7.27 is for a SENDER address whose domain has a null MX (RFC 7505 "
                    "§4.2); here the recipient's domain has one.",
          "5.1.2": "5.1.2 'bad destination system address' is the older, vaguer code; RFC "
                   "7505 §4.1 registers a precise one for a null MX."},
         "5.1.10 (RFC 7505 §4.1, with reply code 556 from RFC 7504): the domain says it "
         "accepts no mail."),
    hint="The MX editor's 'Null MX' button shows what the sender decides.",
    solution="5.1.10: 'Recipient address has null MX' (RFC 7505 §4.1; the reply code is "
             "556, defined in RFC 7504).",
    answer_help='Write a status code in quotes instead of None (e.g. answer = "4.7.1") and run '
    'the cell.'))

register(Exercise(
    "03.transient", "A 4xx reply",
    "Bob's server answered RCPT with 450 4.7.1. What does mail.example.com do? "
    "(a) bounce the message back to Alice at once; (b) keep it in its queue and try "
    "again later; (c) give up on Bob silently.",
    choice("b", {"a": "A 4xx is a transient failure: 'not now'. Bouncing is for 5xx "
                      "(or after days of 4xx: Postfix gives up after maximal_queue_lifetime, "
                      "5 days).",
                 "c": "A mail server never drops a message silently: it delivers it or "
                      "tells the sender (RFC 5321 §6.1)."},
           "A 4xx means 'try again later' (RFC 5321 §4.2.1): the message stays queued and "
           "the retry follows the schedule."),
    hint="What does the first digit 4 mean (RFC 5321 §4.2.1)?",
    solution="(b): 4xx is a transient failure. The message stays in the queue and is retried "
             "(Postfix: after 5 minutes, then 10, 20 …), and bounces only after days.",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the cell.'))

register(Exercise(
    "03.first-retry", "How long to wait",
    "After the first 450, how many seconds did mail.example.com wait before its next try?",
    number(300, {600: "600 s is the wait after the second failure (the wait doubles).",
                 60: "Not a minute: look at the arrow 'retry in … min' in the timeline.",
                 5: "5 is the number of minutes; the question asks for seconds.",
                 1800: "1800 s (30 minutes) is what RFC 5321 §4.5.4.1 suggests as a minimum; "
                       "Postfix (and this world) starts at 300 s.",
                 4000: "4000 s is Postfix's maximal_backoff_time, the longest wait, not the "
                       "first."},
           "300 s (Postfix's minimal_backoff_time); after that the wait doubles, up to "
           "4000 s."),
    hint="The timeline's orange arrow says 'retry in … min'; the trace's delivery.deferred "
         "event has a retry_in field.",
    solution="300 seconds (5 minutes): Postfix's minimal_backoff_time, Postfix's choice. "
             "RFC 5321 §4.5.4.1 says the retry interval SHOULD be at least 30 minutes; "
             "greylisting servers usually accept a retry after a few minutes, which is one "
             "reason MTAs retry sooner.",
    answer_help="Write a number of seconds instead of None (e.g. answer = 60) and run the cell."))


def _break_it(answer: Any) -> Verdict:
    world = _world(answer)
    rules = [r for r in world.faults if r.command == "MESSAGE" and r.reply is not None
             and r.reply.code == 554]
    if not rules:
        return False, "There is no fault rule yet for command 'MESSAGE' with a 554 reply."
    if not any(r.fired for r in rules):
        return False, "Your rule is there but has not fired: send a message to Bob and let " \
                      "mail.example.com deliver it (net.wait(net.idle))."
    bounced = [e for e in world.trace.events("delivery.bounce")
               if str(e.get("status", "")).startswith("5.7")]
    if not bounced:
        return False, "The rule fired, but no bounce with a 5.7.x status yet: wait for the " \
                      "agent (net.wait(net.idle)) and check again."
    return True, f"Bob's server refused the content with 554, so mail.example.com bounced " \
                 f"it ({bounced[-1].get('status')}) and Alice got a bounce."


register(Exercise(
    "03.break-it", "Break it on purpose",
    "Add a fault rule that makes mail.anotherdomain.org refuse the message after its "
    "content (command 'MESSAGE') with '554 5.7.1 Message rejected', send Alice's message "
    "again, let the agent deliver, then check with the world.",
    _break_it,
    hint="world.faults.add(host, command, reply, times=1); then net.submit(...) and "
         "net.wait(net.idle).",
    solution='world.faults.add("mail.anotherdomain.org", "MESSAGE", '
             '"554 5.7.1 Message rejected", times=1)\n'
             "net.submit(seed_message(world), sender=\"alice@example.com\", "
             "recipients=[\"bob@anotherdomain.org\"], user=\"alice@example.com\", "
             "password=\"wonderland\")\n"
             "net.wait(net.idle)\n"
             'ui.exercise("03.break-it").check(world)',
    answer_help="Run the check cell below after your experiment."))

def _ports(answer: Any) -> Verdict:
    if isinstance(answer, str | bytes):  # "587, 465" or "(587, 465)"
        given = tuple(int(x) for x in re.findall(r"\d+", str(answer)))
        if not given:
            raise AnswerError(f"{answer!r} is not a pair of numbers: write two numbers in "
                              "brackets, like (25, 110)")
    else:
        try:
            given = tuple(int(x) for x in answer)
        except (TypeError, ValueError):
            raise AnswerError(f"{answer!r} is not a pair of numbers: write two numbers in "
                              "brackets, like (25, 110)") from None
    if given == (587, 465):
        return True, "587 with STARTTLS (RFC 6409), 465 with TLS from the start (RFC 8314 " \
                     "§3.3; IANA calls it 'submissions', §7.3)."
    if given == (465, 587):
        return False, "Swapped: which one starts in plaintext and says STARTTLS?"
    if len(given) != 2:
        return False, "Give two ports: (starttls_port, implicit_tls_port)."
    if 25 in given:
        return False, "25 is where servers deliver to each other (relay), with STARTTLS " \
                      "when offered; mail programs submit on their own ports."
    if 993 in given or 995 in given or 110 in given or 143 in given:
        return False, "110/995 (POP3) and 143/993 (IMAP) are for fetching mail, not sending."
    return False, "Neither is a submission port: look at the ports table's TLS column."


register(Exercise(
    "06.ports", "Two doors for mail programs",
    "Which port does a mail program use for submission with STARTTLS, and which one for "
    "submission with TLS from the first byte? Answer (starttls_port, implicit_tls_port).",
    _ports,
    hint="The ports table above has a 'TLS' column.",
    solution="(587, 465): 587 starts in plaintext and upgrades with STARTTLS (RFC 6409); "
             "465 ('submissions') starts with TLS (RFC 8314 §3.3, which prefers it to "
             "STARTTLS).",
    answer_help="Write a pair of numbers instead of None (e.g. answer = (25, 110)) and run the "
    "cell."))

register(Exercise(
    "06.why-no-auth", "AUTH only after TLS",
    "Why does mail.example.com not list AUTH in its EHLO reply on port 587 before "
    "STARTTLS? (a) AUTH is not allowed on port 587; (b) the password would cross the "
    "network readable by anyone on the path, so the server offers AUTH only inside TLS; "
    "(c) EHLO replies never list AUTH.",
    choice("b", {"a": "After STARTTLS the same port 587 lists AUTH PLAIN LOGIN: look at "
                      "the second EHLO.",
                 "c": "The second EHLO reply lists AUTH PLAIN LOGIN."},
           "PLAIN and LOGIN send the password base64-encoded, which is not encryption: "
           "RFC 4954 §4 says to offer them only over TLS."),
    hint="Compare the two EHLO replies above. What would an eavesdropper see?",
    solution="(b): AUTH PLAIN carries the password in base64 (readable by anyone). Servers "
             "offer it only inside TLS (RFC 4954 §4, RFC 8314).",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the cell.'))

register(Exercise(
    "06.relay", "No open relay",
    "What reply code does mail.anotherdomain.org give to RCPT TO:<someone@elsewhere.example> "
    "from a client that did not log in?",
    number(454, {554: "554 5.7.1 is what most production servers answer (Postfix with "
                      "reject_unauth_destination), and RFC 3463 §3.8 calls X.7.1 useful only "
                      "as a permanent error. But this MX keeps Postfix's default, "
                      "defer_unauth_destination, which answers 454: look at the reply above.",
                 550: "550 is 'mailbox unavailable' (e.g. 550 5.1.1 for an unknown user of "
                      "its own domain). For a foreign domain Postfix answers 454 4.7.1 by "
                      "default (defer_unauth_destination), 554 5.7.1 with "
                      "reject_unauth_destination.",
                 250: "Then it would be an open relay: anyone could send spam through it.",
                 530: "530 is 'authentication required' (on 587); port 25 does not offer "
                      "AUTH.",
                 503: "503 is 'bad sequence of commands': the RCPT came in the right place."},
           "454 4.7.1 Relay access denied: Postfix's default, defer_unauth_destination, a "
           "safety net that defers instead of bouncing while the configuration is young. "
           "Production servers usually say 554 5.7.1 (reject_unauth_destination); a world "
           "sets it with the policy key unauth_destination = \"reject\"."),
    hint="Look at the reply after the RCPT to a foreign domain in the dialogue above.",
    solution="454 (4.7.1 Relay access denied): an MX accepts mail for its own domains only; "
             "relaying for strangers would make it an open relay. 454 is Postfix's default "
             "(defer_unauth_destination); with reject_unauth_destination the answer is "
             "554 5.7.1, what most production servers say.",
    answer_help="Write a number instead of None (e.g. answer = 7) and run the cell."))

register(Exercise(
    "07.new", "Where it landed",
    "In which subdirectory of Bob's Maildir did the delivered message land?",
    text(["new", "Maildir/new", "bob/new"],
         {"tmp": "tmp/ holds a message only while it is being written; it is renamed "
                 "into new/ once it is safe on disk.",
          "cur": "cur/ is for messages a mail program has seen; nobody has yet.",
          "inbox": "In a Maildir the inbox is the directory itself; the question asks for "
                   "the subdirectory: tmp, new or cur."},
         "new/: delivered, not yet seen by a mail program."),
    hint="Look at the tree: tmp/, new/, cur/.",
    solution="new/: the delivery agent (here the MX itself; in a real set-up the MDA, "
             "e.g. Postfix's virtual or Dovecot's LMTP) writes into tmp/, fsyncs, then "
             "renames into new/ (so a reader never sees half a message); a mail program "
             "moves it to cur/ once seen.",
    answer_help='Write a directory name in quotes instead of None (e.g. answer = "tmp") and run '
    'the cell.'))

register(Exercise(
    "07.first-hop", "Bottom to top",
    "Reading the Received: headers bottom to top: which server handled the message first?",
    text("mail.example.com", {"mail.anotherdomain.org": "That is the top header: the last "
                                                        "server, the one that stored it.",
                              "127.0.0.1": "That is where the message came from (the 'from' "
                                           "part of the bottom header: Alice's program, "
                                           "which adds no Received: header). Which server "
                                           "wrote that header (its 'by' part)?"},
         "mail.example.com received it first (from Alice's program) and added the bottom "
         "header; each later server adds its header on top."),
    hint="Each server puts its Received: header on top of the others (RFC 5321 §4.4).",
    solution="mail.example.com: its header ('from [127.0.0.1] ... by mail.example.com "
             "with ESMTPSA') is at the bottom, because every server prepends its own.",
    answer_help='Write a host name in quotes instead of None (e.g. answer = "ns.simsmtp.test") '
    'and run the cell.'))

register(Exercise(
    "07.dele", "Deleting with POP3",
    "Which POP3 command marks a message for deletion? (It is really removed only when the "
    "session ends with QUIT.)",
    text(["DELE", "DELE 1", "DELE n", "DELE msg"],
         {"quit": "QUIT ends the session (and performs the deletions), but it "
                  "does not choose what to delete.",
          "rset": "RSET undoes the deletion marks.",
          "retr": "RETR downloads a message; it stays on the server unless DELE marks it.",
          "expunge": "EXPUNGE is IMAP (RFC 9051); POP3's command is shorter.",
          "del": "Close: POP3 commands are four letters (RFC 1939 §3)."},
         "DELE n marks message n; QUIT enters the UPDATE state, which removes it "
         "(RFC 1939 §6)."),
    hint="RFC 1939 §5 lists the TRANSACTION-state commands: STAT, LIST, RETR, DELE, NOOP, "
         "RSET.",
    solution="DELE (RFC 1939 §5); the message is removed in the UPDATE state, after QUIT. "
             "A connection that breaks before QUIT deletes nothing.",
    answer_help='Write a command in quotes instead of None (e.g. answer = "STAT") and run the '
    'cell.'))


__all__ = ["EXERCISES", "AnswerError", "Exercise", "Feedback", "choice", "exercise",
           "exercises_for", "number", "register", "sequence", "text"]
