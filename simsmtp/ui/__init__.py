"""The course's widgets and plots: the only part of simsmtp that knows a screen.

Notebooks call these in one line; they read the world's trace (``world.trace``) and the
running network, and never reimplement protocol logic::

    from simsmtp import ui
    ui.sequence_diagram(world)          # the whole journey, drawn from the trace
    ui.MXEditor(net)                    # edit anotherdomain.org's MX records live
    ui.retry_timeline(world)            # greylisting: 450, then the retry on the virtual clock
    ui.state_diagram("server", current="MAIL")
    ui.TraceTable(world)                # every event, filterable

One module per widget family (add a new family as a new module and list its public names in
:data:`_EXPORTS`):

* :mod:`~simsmtp.ui.style` colours, fonts and HTML helpers every family uses (one look);
* :mod:`~simsmtp.ui.base` :class:`~simsmtp.ui.base.View`, the base of every widget: it
  holds an ipywidgets tree in ``.widget`` and displays it;
* :mod:`~simsmtp.ui.journey` (pure) the trace as conversations and arrows;
* :mod:`~simsmtp.ui.sequence` the sequence diagram;
* :mod:`~simsmtp.ui.mx` the MX editor and the sender's route;
* :mod:`~simsmtp.ui.timeline` the retry timeline;
* :mod:`~simsmtp.ui.states` the state-machine diagram (and a widget that follows a state);
* :mod:`~simsmtp.ui.tracetable` the filterable trace table;
* :mod:`~simsmtp.ui.mailbox` Maildir trees, ``Received:`` hops, dialogues, port tables;
* :mod:`~simsmtp.ui.imap` a user's IMAP folders with UIDs, flags and Maildir files;
* :mod:`~simsmtp.ui.exercises` exercises with a check function, a hint and a folded solution;
* :mod:`~simsmtp.ui.stepper` a real SMTP session forward and backward, EHLO capabilities;
* :mod:`~simsmtp.ui.console` a console to type SMTP by hand, like telnet;
* :mod:`~simsmtp.ui.wire` one connection as transcript | hexdump | eavesdropper;
* :mod:`~simsmtp.ui.tlsview` TLS records annotated, the certificate chain, the entropy chart;
* :mod:`~simsmtp.ui.transportsec` MTA-STS, DANE and TLS-RPT decisions and reports;
* :mod:`~simsmtp.ui.mailauth` SPF, DKIM and DMARC: records, signatures, verdicts, the lab
  (the scenarios that send the messages are :mod:`simsmtp.net.mailauth_scenarios`);
* :mod:`~simsmtp.ui.worldmap` the map of the world, a delivery played along it;
* :mod:`~simsmtp.ui.inbox` a user's Maildir as a mail program shows it;
* :mod:`~simsmtp.ui.sidebyside` one message in plaintext and with STARTTLS, side by side;
* :mod:`~simsmtp.ui.labkit` the instructor's kit: the students' copy and the answer key.

``import simsmtp`` never imports this package, and importing it loads neither ipywidgets
nor matplotlib: each name below is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it (loaded on first access).
_EXPORTS: dict[str, str] = {
    # journey (pure)
    "journey": "journey",
    "journey_text": "journey",
    "Arrow": "journey",
    # sequence diagram
    "sequence_diagram": "sequence",
    # MX editor
    "MXEditor": "mx",
    "RoutePlan": "mx",
    "sender_route": "mx",
    # retry timeline
    "retry_points": "timeline",
    "retry_timeline": "timeline",
    "retry_text": "timeline",
    # state machine
    "state_diagram": "states",
    "StateMachineView": "states",
    # trace table
    "TraceTable": "tracetable",
    "trace_rows": "tracetable",
    "trace_table": "tracetable",
    # mailbox, headers, dialogues, ports
    "maildir_tree": "mailbox",
    "received_hops": "mailbox",
    "received_table": "mailbox",
    "dialogue": "mailbox",
    "ports_table": "mailbox",
    # IMAP folders on disk (notebook 7b)
    "imap_folders": "imap",
    # exercises (an instructor's own: ui.register(ui.Exercise(key, title, question, check)))
    "exercise": "exercises",
    "exercises_for": "exercises",
    "Exercise": "exercises",
    "register": "exercises",
    # stepper: a real session forward and backward; EHLO capabilities
    "Stepper": "stepper",
    "capability_table": "stepper",
    "seed_dialogue": "stepper",
    "seed_script": "stepper",
    "run_script": "stepper",
    "steps_table": "stepper",
    # console: type SMTP by hand
    "Console": "console",
    # the wire: transcript | hexdump | eavesdropper
    "WireView": "wire",
    "connection_label": "wire",
    "connections": "wire",
    "eavesdropper_report": "wire",
    "find_connection": "wire",
    "stream_hexdump": "wire",
    "transcript_text": "wire",
    "wait_closed": "wire",
    # TLS: records, certificate chain, entropy
    "TLSInspector": "tlsview",
    "certificate_chain": "tlsview",
    "entropy_chart": "tlsview",
    "entropy_text": "tlsview",
    "tls_connections": "tlsview",
    "tls_records": "tlsview",
    "tls_summary": "tlsview",
    # MTA-STS, DANE and TLS-RPT (notebook 05b)
    "security_text": "transportsec",
    "tls_report_text": "transportsec",
    # email authentication: SPF, DKIM, DMARC records, verdicts, and the lab; the scenarios
    # (alice_sends …) live in simsmtp.net.mailauth_scenarios and come through ui.mailauth,
    # which shows their outcomes as HTML
    "MailAuthLab": "mailauth",
    "AuthOutcome": "mailauth",
    "outcome_html": "mailauth",
    "alice_sends": "mailauth",
    "mallory_sends": "mailauth",
    "user_sends": "mailauth",
    "spoof_sends": "mailauth",
    "forward_message": "mailauth",
    "auth_records": "mailauth",
    "auth_story": "mailauth",
    "signature_table": "mailauth",
    "body_hash": "mailauth",
    "received_message": "mailauth",
    "results_table": "mailauth",
    "alignment_table": "mailauth",
    # the map of the world
    "WorldMap": "worldmap",
    "world_map": "worldmap",
    "world_map_text": "worldmap",
    # a mailbox as a mail program shows it
    "Inbox": "inbox",
    "inbox": "inbox",
    "inbox_text": "inbox",
    "message_text": "inbox",
    # plaintext and STARTTLS side by side
    "SideBySide": "sidebyside",
    "side_by_side": "sidebyside",
    "side_by_side_text": "sidebyside",
    # the instructor's kit
    "student_exercise": "labkit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simsmtp.ui' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"simsmtp.ui.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
