"""Issue 13, point 4: hostile world files and command lines get one clear line.

A 10 MB value is cut in the message; arrays or inline tables nested thousands deep name the
file, the line and the key (not ``RecursionError``); every time and size key has a range
(``error_sleep_time = 1e300`` would hang a session for ever), in a file and in
``World.check()`` after a change in code; ``up --capture`` on a file and ``demo --pcap``
into a missing directory say so in words, and the demo checks before it plays.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from simsmtp.cli import main
from simsmtp.world import World
from simsmtp.world.loader import MAX_SHOWN, WorldFileError
from simsmtp.world.model import parse_world

SEED = resources.files("simsmtp.world").joinpath("seed.toml").read_text("utf-8")
POLICY = '[hosts."mail.example.com".policy]\noutbound_tls = "opportunistic"'


def error_of(text: str) -> WorldFileError:
    with pytest.raises(WorldFileError) as caught:
        parse_world(text, "hostile.toml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("hostile.toml")
    return caught.value


@pytest.mark.parametrize("rtype", ["TXT", "A"])
def test_a_10_mb_value_is_cut_in_the_message(rtype: str) -> None:
    value = "x" * 10_000_000
    err = error_of(SEED + f'[[records]]\nname = "example.org"\ntype = "{rtype}"\n'
                          f'value = "{value}"\n')
    assert err.key == "records[1].value"
    assert len(str(err)) < 4 * MAX_SHOWN + 200
    assert "(10,000,000 characters)" in str(err)


@pytest.mark.parametrize(("nested", "key", "line"), [
    ("[world]\nname = " + "[" * 50_000 + "]" * 50_000, "world.name", 2),
    ("deep = " + "{ a = " * 3_000 + "1" + " }" * 3_000, "deep", 1),
    (SEED + '[hosts."m.example.com".policy]\nx = { a = "[{", b = '
     + "[" * 3_000 + "]" * 3_000 + " }", 'hosts."m.example.com".policy.x', None),
])
def test_nesting_thousands_deep_names_the_file_the_line_and_the_key(
        nested: str, key: str, line: int | None) -> None:
    err = error_of(nested + "\n")
    assert err.key == key
    assert err.expected == "arrays and inline tables nested at most 100 deep"
    if line is not None:
        assert err.line == line
    assert "Recursion" not in str(err)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("error_sleep_time", "1e300", "a number >= 0 and <= 60 (seconds)"),
    ("idle_timeout", "inf", "a number > 0 and <= 86400 (seconds)"),
    ("idle_timeout", "nan", "a number > 0 and <= 86400 (seconds)"),
    ("min_data_rate", "1e400", "a number > 0 and <= 1073741824 (octets/s)"),
    ("size_limit", str(2**63), "an integer from 0 to 1073741824 (bytes, 0 = no limit)"),
    ("max_connections", "0", "an integer from 1 to 1000000"),
    ("mailauth_timeout", "0", "a number > 0 and <= 3600 (seconds)"),
    ("stress_idle_timeout", "-1", "a number > 0 and <= 86400 (seconds)"),
])
def test_every_time_and_size_key_has_a_sensible_range(key: str, value: str,
                                                      expected: str) -> None:
    err = error_of(SEED.replace(POLICY, f"{POLICY}\n{key} = {value}"))
    assert err.key == f'hosts."mail.example.com".policy.{key}'
    assert err.expected == expected


def test_a_fault_delay_has_a_range_too() -> None:
    err = error_of(SEED + '[[faults]]\nhost = "*"\ncommand = "RCPT"\ndelay = 1e300\n')
    assert (err.key, err.expected) == ("faults[0].delay", "a number >= 0 and <= 3600 "
                                                          "(seconds)")


def test_a_policy_changed_in_code_is_checked_like_a_file() -> None:
    world = World.seed_world()
    world.host("mail.anotherdomain.org").policy.error_sleep_time = 1e300
    with pytest.raises(WorldFileError, match=r"error_sleep_time: expected a number >= 0 "
                                             r"and <= 60 \(seconds\); got 1e\+300"):
        world.check()


def test_up_capture_into_a_file_says_so(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0\n")
    assert main(["up", "--capture", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err == (f"simsmtp: error: --capture {a_file}: is a file, not a directory; give a "
                   "directory (it is created if missing)\n")
    assert a_file.read_text() == "root:x:0:0\n"  # untouched


def test_demo_checks_its_pcap_path_before_it_plays(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "x.pcap"
    assert main(["demo", "--pcap", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing played
    assert err == (f"simsmtp: error: --pcap {target}: the directory {target.parent} does "
                   "not exist\n")
    assert main(["demo", "--pcap", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "is a directory; give a file name" in err
